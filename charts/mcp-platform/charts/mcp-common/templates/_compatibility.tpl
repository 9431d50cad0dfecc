{{/*
OpenShift: global.compatibility.openshift.adaptSecurityContext = auto (default: when the API has
security.openshift.io/v1), force, or disabled. Adapted contexts set no fixed UID/GID (runAsUser,
runAsGroup, fsGroup): the restricted-v2 SCC assigns them from the namespace's range. As Bitnami's
common.compatibility.renderSecurityContext does.
*/}}
{{- define "mcp-common.isOpenshift" -}}
{{- $mode := ((((.Values.global).compatibility).openshift).adaptSecurityContext) | default "auto" -}}
{{- if or (eq $mode "force") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "security.openshift.io/v1")) -}}true{{- end -}}
{{- end -}}

{{/* A security context (pod or container) as YAML, adapted for OpenShift. Call with (dict "context" $ctx "ctx" $). */}}
{{- define "mcp-common.securityContext" -}}
{{- $adapted := deepCopy (.context | default dict) -}}
{{- if include "mcp-common.isOpenshift" .ctx -}}
{{- $adapted = omit $adapted "runAsUser" "runAsGroup" "fsGroup" -}}
{{- if not $adapted.seLinuxOptions }}{{ $adapted = omit $adapted "seLinuxOptions" }}{{ end -}}
{{- end -}}
{{- toYaml $adapted -}}
{{- end -}}
