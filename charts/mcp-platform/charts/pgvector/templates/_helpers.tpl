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

{{/* "<base>-<suffix>" within a length limit, the base cut first: mcp-common.withSuffix (the library chart). */}}
{{- define "pgvector.withSuffix" -}}
{{- include "mcp-common.withSuffix" . -}}
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
{{- include "mcp-common.commonLabels" $ctx }}
{{- end -}}

{{/* The image, through global.imageRegistry (mcp-common.image). */}}
{{- define "pgvector.image" -}}
{{- include "mcp-common.image" (dict "image" .Values.image "ctx" .) -}}
{{- end -}}

{{- define "pgvector.secretName" -}}
{{- default (include "pgvector.fullname" .) (tpl .Values.auth.existingSecret .) -}}
{{- end -}}

{{/* Service DNS name (used by the umbrella to build DATABASE_URL). */}}
{{- define "pgvector.host" -}}
{{- include "pgvector.fullname" . -}}
{{- end -}}
