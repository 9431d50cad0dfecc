{{/*
Named templates are global across charts: every name is prefixed with "tree-of-thoughts.". The names, labels,
image, tracks and hosts shared with the other app chart are one-line delegations to the mcp-common
library chart (charts/mcp-common/templates/_app.tpl, documented there); what is this chart's own follows.
*/}}

{{- define "tree-of-thoughts.name" -}}
{{- include "mcp-common.name" . -}}
{{- end -}}

{{- define "tree-of-thoughts.fullname" -}}
{{- include "mcp-common.fullname" . -}}
{{- end -}}

{{/* "<base>-<suffix>" within a length limit, the base cut first: mcp-common.withSuffix (the library chart). */}}
{{- define "tree-of-thoughts.withSuffix" -}}
{{- include "mcp-common.withSuffix" . -}}
{{- end -}}

{{- define "tree-of-thoughts.chart" -}}
{{- include "mcp-common.chart" . -}}
{{- end -}}

{{/* Minimal, immutable selector labels. */}}
{{- define "tree-of-thoughts.selectorLabels" -}}
{{- include "mcp-common.selectorLabels" . -}}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "server"). */}}
{{- define "tree-of-thoughts.labels" -}}
{{- include "mcp-common.labels" . -}}
{{- end -}}

{{- define "tree-of-thoughts.serviceAccountName" -}}
{{- include "mcp-common.serviceAccountName" . -}}
{{- end -}}

{{/* Image reference; call with (dict "ctx" $ "tag" "optional-tag"). */}}
{{- define "tree-of-thoughts.image" -}}
{{- include "mcp-common.appImage" . -}}
{{- end -}}

{{- define "tree-of-thoughts.tracks" -}}
{{- include "mcp-common.tracks" . -}}
{{- end -}}

{{/* The track the main Service selects. */}}
{{- define "tree-of-thoughts.activeTrack" -}}
{{- include "mcp-common.activeTrack" . -}}
{{- end -}}

{{- define "tree-of-thoughts.databaseSecretName" -}}
{{- include "mcp-common.databaseSecretName" . -}}
{{- end -}}

{{- define "tree-of-thoughts.secretName" -}}
{{- include "mcp-common.secretName" . -}}
{{- end -}}

{{/*
Public issuer URL (ISSUER_URL / AUTH_ISSUER): config.issuerUrl, else global.auth.issuerUrl, else
"<global.publicScheme>://<global.hosts.treeOfThoughts>", else the in-cluster Service URL.
*/}}
{{- define "tree-of-thoughts.issuerUrl" -}}
{{- $g := .Values.global | default dict -}}
{{- $issuer := tpl .Values.config.issuerUrl . -}}
{{- if not $issuer -}}{{- $issuer = dig "auth" "issuerUrl" "" $g -}}{{- end -}}
{{- if not $issuer -}}
{{- $host := dig "hosts" "treeOfThoughts" "" $g -}}
{{- if $host -}}{{- $issuer = printf "%s://%s" (dig "publicScheme" "https" $g) $host -}}{{- end -}}
{{- end -}}
{{- if not $issuer -}}
{{- $issuer = printf "http://%s:%v" (include "tree-of-thoughts.fullname" .) .Values.service.port -}}
{{- end -}}
{{- $issuer -}}
{{- end -}}

{{/*
JWKS URL for verifying incoming tokens. Empty (the default): the server verifies with its own keys
in-process; fetching its own JWKS through its Service would be circular (no endpoints before ready).
*/}}
{{- define "tree-of-thoughts.jwksUrl" -}}
{{- tpl .Values.config.auth.jwksUrl . -}}
{{- end -}}

{{- define "tree-of-thoughts.keySecretName" -}}
{{- default (printf "%s-keys" (include "tree-of-thoughts.fullname" .)) .Values.keyStore.secretName -}}
{{- end -}}

{{/* Host header values accepted by /mcp: public host, extra hosts, and the Services' DNS names. */}}
{{- define "tree-of-thoughts.allowedHosts" -}}
{{- include "mcp-common.allowedHosts" (dict "ctx" . "hostKey" "treeOfThoughts") -}}
{{- end -}}

{{/* FORWARDED_ALLOW_IPS: global.forwardedAllowIps; standalone, the private ranges (any pod network). */}}
{{- define "tree-of-thoughts.forwardedAllowIps" -}}
{{- include "mcp-common.forwardedAllowIps" . -}}
{{- end -}}
