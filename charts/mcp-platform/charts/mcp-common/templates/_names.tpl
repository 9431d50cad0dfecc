{{/* Library templates: every name is prefixed with "mcp-common.". Modelled on Bitnami's common chart. */}}

{{/*
"<base>-<suffix>" in at most `max` characters (default 63; 52 for a CronJob or a StatefulSet): the base
is cut BEFORE the suffix is added, so the suffix always survives and names stay unique; with an empty
suffix, the base cut to `max`. Short names are unchanged. Call with (dict "base" $name "suffix" "canary").
*/}}
{{- define "mcp-common.withSuffix" -}}
{{- $max := int (.max | default 63) -}}
{{- if .suffix -}}
{{- printf "%s-%s" (.base | trunc (int (sub $max (add1 (len .suffix)))) | trimSuffix "-") .suffix -}}
{{- else -}}
{{- .base | trunc $max | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* global.commonLabels, as label lines (values cut to 63 characters). Call with the chart's root context. */}}
{{- define "mcp-common.commonLabels" -}}
{{- range $k, $v := ((.Values.global).commonLabels | default dict) }}
{{ $k }}: {{ $v | toString | trunc 63 | quote }}
{{- end -}}
{{- end -}}

{{/* global.commonAnnotations merged with `extra` (a dict; the extra wins), as YAML; empty when both are. */}}
{{- define "mcp-common.annotations" -}}
{{- $all := merge (deepCopy (.extra | default dict)) (((.ctx.Values.global).commonAnnotations) | default dict) -}}
{{- if $all }}{{ toYaml $all }}{{ end -}}
{{- end -}}
