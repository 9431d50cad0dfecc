{{/* Named templates are global across charts: every name is prefixed with "mcp-platform.". */}}

{{- define "mcp-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"<base>-<suffix>" in at most `max` characters (default 63; 52 for a CronJob or a StatefulSet): the base
is cut BEFORE the suffix is added, so the suffix always survives and names stay unique; with an empty
suffix, the base cut to `max`. Short names are unchanged. Call with (dict "base" $name "suffix" "canary").
*/}}
{{- define "mcp-platform.withSuffix" -}}
{{- $max := int (.max | default 63) -}}
{{- if .suffix -}}
{{- printf "%s-%s" (.base | trunc (int (sub $max (add1 (len .suffix)))) | trimSuffix "-") .suffix -}}
{{- else -}}
{{- .base | trunc $max | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-platform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Call with (dict "ctx" $ "component" "..."). */}}
{{- define "mcp-platform.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "mcp-platform.chart" $ctx }}
{{ include "mcp-platform.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: mcp-platform
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- end -}}

{{/* Names of the subcharts' resources (their fullname rule: "<release>-<name>" or fullnameOverride). */}}
{{- define "mcp-platform.registryName" -}}
{{- $v := index .Values "tool-registry" -}}
{{- $v.fullnameOverride | default (printf "%s-%s" .Release.Name ($v.nameOverride | default "tool-registry")) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.totName" -}}
{{- $v := index .Values "tree-of-thoughts" -}}
{{- $v.fullnameOverride | default (printf "%s-%s" .Release.Name ($v.nameOverride | default "tree-of-thoughts")) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* 52, like the pgvector subchart: a StatefulSet's controller-revision-hash label is "<name>-<hash>". */}}
{{- define "mcp-platform.pgvectorName" -}}
{{- $v := .Values.pgvector -}}
{{- $v.fullnameOverride | default (printf "%s-%s" .Release.Name ($v.nameOverride | default "pgvector")) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL for the apps. */}}
{{- define "mcp-platform.databaseSecretName" -}}
{{- if and (eq .Values.database.mode "external") .Values.database.external.existingSecret -}}
{{- .Values.database.external.existingSecret -}}
{{- else -}}
{{- printf "%s-database" .Release.Name -}}
{{- end -}}
{{- end -}}

{{- define "mcp-platform.cnpgClusterName" -}}
{{- .Values.database.cloudnativepg.clusterName | default (printf "%s-db" .Release.Name) | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "mcp-platform.fullname" .)) -}}
{{- end -}}

{{/* Pod/container security baseline for the umbrella's own pods (Jobs, tests). */}}
{{- define "mcp-platform.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1001
runAsGroup: 1001
fsGroup: 1001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mcp-platform.containerSecurityContext" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "mcp-platform.registryImage" -}}
{{- $img := (index .Values "tool-registry").image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
Consistency checks between the umbrella's settings and the subcharts' (subcharts cannot read the
parent's values, so the wiring is validated here, with messages that say what to set).
*/}}
{{- define "mcp-platform.validate" -}}
{{- $mode := .Values.database.mode -}}
{{- if and (eq $mode "embedded") (not .Values.pgvector.enabled) -}}
{{- fail "database.mode=embedded needs pgvector.enabled=true" -}}
{{- end -}}
{{- if and (ne $mode "embedded") .Values.pgvector.enabled -}}
{{- fail (printf "database.mode=%s: set pgvector.enabled=false (the embedded database is only for database.mode=embedded)" $mode) -}}
{{- end -}}
{{- if and (eq $mode "external") (not .Values.database.external.existingSecret) (not .Values.database.external.url) -}}
{{- fail "database.mode=external needs database.external.existingSecret (a Secret with the key DATABASE_URL) or database.external.url" -}}
{{- end -}}
{{- $want := include "mcp-platform.databaseSecretName" . -}}
{{- range $app := list "tool-registry" "tree-of-thoughts" -}}
{{- $v := index $.Values $app -}}
{{- if $v.enabled -}}
{{- $got := tpl $v.database.secretName $ -}}
{{- if ne $got $want -}}
{{- fail (printf "%s.database.secretName renders to %q but the database Secret is %q: set %s.database.secretName=%s" $app $got $want $app $want) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
