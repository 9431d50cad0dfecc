{{/* Named templates are global across charts: every name is prefixed with "pgvector.". */}}

{{- define "pgvector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* At most 52 characters: the StatefulSet's controller-revision-hash label is "<name>-<hash>" (63 at most). */}}
{{- define "pgvector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "pgvector.name" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
"<base>-<suffix>" in at most `max` characters (default 63; 52 for a CronJob or a StatefulSet): the base
is cut BEFORE the suffix is added, so the suffix always survives and names stay unique; with an empty
suffix, the base cut to `max`. Short names are unchanged. Call with (dict "base" $name "suffix" "canary").
*/}}
{{- define "pgvector.withSuffix" -}}
{{- $max := int (.max | default 63) -}}
{{- if .suffix -}}
{{- printf "%s-%s" (.base | trunc (int (sub $max (add1 (len .suffix)))) | trimSuffix "-") .suffix -}}
{{- else -}}
{{- .base | trunc $max | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pgvector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pgvector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pgvector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Call with (dict "ctx" $ "component" "database"). */}}
{{- define "pgvector.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "pgvector.chart" $ctx }}
{{ include "pgvector.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Values.image.tag | trunc 63 | quote }}
app.kubernetes.io/component: {{ .component | default "database" }}
app.kubernetes.io/part-of: mcp-platform
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- end -}}

{{- define "pgvector.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{- define "pgvector.secretName" -}}
{{- default (include "pgvector.fullname" .) (tpl .Values.auth.existingSecret .) -}}
{{- end -}}

{{/* Service DNS name (used by the umbrella to build DATABASE_URL). */}}
{{- define "pgvector.host" -}}
{{- include "pgvector.fullname" . -}}
{{- end -}}
