{{/*
Named templates are global across charts: every name is prefixed with "tool-registry.". The names, labels,
image, tracks and hosts shared with the other app chart are one-line delegations to the mcp-common
library chart (charts/mcp-common/templates/_app.tpl, documented there); what is this chart's own follows.
*/}}

{{- define "tool-registry.name" -}}
{{- include "mcp-common.name" . -}}
{{- end -}}

{{- define "tool-registry.fullname" -}}
{{- include "mcp-common.fullname" . -}}
{{- end -}}

{{/* "<base>-<suffix>" within a length limit, the base cut first: mcp-common.withSuffix (the library chart). */}}
{{- define "tool-registry.withSuffix" -}}
{{- include "mcp-common.withSuffix" . -}}
{{- end -}}

{{- define "tool-registry.chart" -}}
{{- include "mcp-common.chart" . -}}
{{- end -}}

{{/* Minimal, immutable selector labels. */}}
{{- define "tool-registry.selectorLabels" -}}
{{- include "mcp-common.selectorLabels" . -}}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "server"). */}}
{{- define "tool-registry.labels" -}}
{{- include "mcp-common.labels" . -}}
{{- end -}}

{{- define "tool-registry.serviceAccountName" -}}
{{- include "mcp-common.serviceAccountName" . -}}
{{- end -}}

{{/* Image reference; call with (dict "ctx" $ "tag" "optional-tag"). */}}
{{- define "tool-registry.image" -}}
{{- include "mcp-common.appImage" . -}}
{{- end -}}

{{- define "tool-registry.tracks" -}}
{{- include "mcp-common.tracks" . -}}
{{- end -}}

{{/* The track the main Service selects. */}}
{{- define "tool-registry.activeTrack" -}}
{{- include "mcp-common.activeTrack" . -}}
{{- end -}}

{{- define "tool-registry.databaseSecretName" -}}
{{- include "mcp-common.databaseSecretName" . -}}
{{- end -}}

{{- define "tool-registry.secretName" -}}
{{- include "mcp-common.secretName" . -}}
{{- end -}}

{{/* Public scheme + host of the Tree-of-Thoughts issuer, or the configured issuer. */}}
{{- define "tool-registry.authIssuer" -}}
{{- $g := .Values.global | default dict -}}
{{- $issuer := tpl .Values.config.auth.issuer . -}}
{{- if not $issuer -}}{{- $issuer = dig "auth" "issuerUrl" "" $g -}}{{- end -}}
{{- if not $issuer -}}
{{- $host := dig "hosts" "treeOfThoughts" "" $g -}}
{{- if $host -}}{{- $issuer = printf "%s://%s" (dig "publicScheme" "https" $g) $host -}}{{- end -}}
{{- end -}}
{{- if not $issuer -}}
{{- $issuer = include "tool-registry.totServiceUrl" . -}}
{{- end -}}
{{- $issuer -}}
{{- end -}}

{{/*
In-cluster URL of the Tree-of-Thoughts Service as the tree-of-thoughts chart names it by default:
"<release>-tree-of-thoughts" cut to 63 characters, port 8001. Only .Release is read, so the umbrella
calls it too and fails (naming the value to set) when the real Service differs (nameOverride,
fullnameOverride or service.port changed there).
*/}}
{{- define "tool-registry.totServiceUrl" -}}
{{- printf "http://%s:8001" (printf "%s-tree-of-thoughts" .Release.Name | trunc 63 | trimSuffix "-") -}}
{{- end -}}

{{- define "tool-registry.jwksUrl" -}}
{{- $url := tpl .Values.config.auth.jwksUrl . -}}
{{- default (printf "%s/.well-known/jwks.json" (include "tool-registry.totServiceUrl" .)) $url -}}
{{- end -}}

{{/* Host header values accepted by /mcp: public host, extra hosts, and the Services' DNS names. */}}
{{- define "tool-registry.allowedHosts" -}}
{{- include "mcp-common.allowedHosts" (dict "ctx" . "hostKey" "registry") -}}
{{- end -}}

{{/* PUBLIC_URL: config.publicUrl, else "<global.publicScheme>://<global.hosts.registry>", else empty. */}}
{{- define "tool-registry.publicUrl" -}}
{{- $g := .Values.global | default dict -}}
{{- $url := tpl .Values.config.publicUrl . -}}
{{- if not $url -}}
{{- with dig "hosts" "registry" "" $g }}{{ $url = printf "%s://%s" (dig "publicScheme" "https" $g) . }}{{ end -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{/* FORWARDED_ALLOW_IPS: global.forwardedAllowIps; standalone, the private ranges (any pod network). */}}
{{- define "tool-registry.forwardedAllowIps" -}}
{{- include "mcp-common.forwardedAllowIps" . -}}
{{- end -}}

{{/* POLICY_FILE: inside the policy ConfigMap's mount, a directory (the kubelet swaps its content in
place on updates; a subPath mount would never see them). */}}
{{- define "tool-registry.policyDir" -}}/etc/tool-registry/policy{{- end -}}
{{- define "tool-registry.policyFile" -}}{{ include "tool-registry.policyDir" . }}/policy.yaml{{- end -}}
{{- define "tool-registry.policyConfigMap" -}}
{{- printf "%s-policy" (include "tool-registry.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}
