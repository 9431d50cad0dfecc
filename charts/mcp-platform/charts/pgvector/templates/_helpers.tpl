{{/* Named templates are global across charts: every name is prefixed with "pgvector.". */}}

{{- define "pgvector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pgvector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "pgvector.name" .) | trunc 63 | trimSuffix "-" -}}
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
