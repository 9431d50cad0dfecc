{{/*
Image reference. Call with (dict "image" .Values.image "tag" "fallback tag" "ctx" $).
global.imageRegistry (a mirror) replaces the registry of the repository ("ghcr.io/mcp-platform/x" ->
"<mirror>/mcp-platform/x"), or prefixes one without a registry ("pgvector/pgvector" -> "<mirror>/pgvector/pgvector").
A digest pins the image instead of the tag.
*/}}
{{- define "mcp-common.image" -}}
{{- $repo := .image.repository -}}
{{- $mirror := ((.ctx.Values.global).imageRegistry) | default "" -}}
{{- if $mirror -}}
{{- $parts := splitList "/" $repo -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $repo = join "/" (rest $parts) -}}
{{- end -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" $mirror) $repo -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.image.tag | default .tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
imagePullSecrets: global.imagePullSecrets then the chart's own (names or {name: ...}), without repeats.
Call with (dict "secrets" .Values.imagePullSecrets "ctx" $); renders the whole key, or nothing.
*/}}
{{- define "mcp-common.imagePullSecrets" -}}
{{- $names := list -}}
{{- range (concat (((.ctx.Values.global).imagePullSecrets) | default list) (.secrets | default list)) -}}
{{- if kindIs "map" . }}{{ $names = append $names .name }}{{ else }}{{ $names = append $names . }}{{ end -}}
{{- end -}}
{{- if $names }}
imagePullSecrets:
{{- range uniq $names }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}
