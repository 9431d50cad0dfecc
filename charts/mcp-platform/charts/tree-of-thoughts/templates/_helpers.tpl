{{/* Named templates are global across charts: every name is prefixed with "tree-of-thoughts.". */}}

{{- define "tree-of-thoughts.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: "<release>-<name>" (no "release contains name" shortcut, so other charts of the
platform can predict it), or fullnameOverride.
*/}}
{{- define "tree-of-thoughts.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tree-of-thoughts.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<base>-<suffix>" within a length limit, the base cut first: mcp-common.withSuffix (the library chart). */}}
{{- define "tree-of-thoughts.withSuffix" -}}
{{- include "mcp-common.withSuffix" . -}}
{{- end -}}

{{- define "tree-of-thoughts.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Minimal, immutable selector labels. */}}
{{- define "tree-of-thoughts.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tree-of-thoughts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "server"). */}}
{{- define "tree-of-thoughts.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "tree-of-thoughts.chart" $ctx }}
{{ include "tree-of-thoughts.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Values.image.tag | default $ctx.Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: {{ .component | default "server" }}
app.kubernetes.io/part-of: mcp-platform
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- include "mcp-common.commonLabels" $ctx }}
{{- end -}}

{{- define "tree-of-thoughts.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tree-of-thoughts.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference; call with (dict "ctx" $ "tag" "optional-tag"). */}}
{{- define "tree-of-thoughts.image" -}}
{{- $img := .ctx.Values.image -}}
{{- if and $img.digest (not .tag) -}}
{{- include "mcp-common.image" (dict "image" $img "ctx" .ctx) -}}
{{- else -}}
{{- include "mcp-common.image" (dict "image" (dict "repository" $img.repository "tag" (.tag | default $img.tag | default .ctx.Chart.AppVersion)) "ctx" .ctx) -}}
{{- end -}}
{{- end -}}

{{/*
Deployment tracks, as a YAML list of {track, suffix, tag, replicas, hpa, service}.
- default:     one track "stable" (Deployment "<fullname>").
- blueGreen:   tracks "blue" and "green", each at full size (replicaCount or its own HPA, named
               after the track) until the operator lists it in blueGreen.retiredTracks, which scales
               it to blueGreen.inactiveReplicas; the Service selects the active track, which can
               never be retired. Switching is two steps (docs/operations.md), never a capacity cliff.
- canary:      an extra track "canary" ("<fullname>-canary", own Service, fixed replicas).
*/}}
{{- define "tree-of-thoughts.tracks" -}}
{{- $v := .Values -}}
{{- if and $v.canary.enabled $v.blueGreen.enabled -}}
{{- fail "tree-of-thoughts: canary.enabled and blueGreen.enabled are mutually exclusive" -}}
{{- end -}}
{{- if $v.blueGreen.enabled }}
{{- $retired := $v.blueGreen.retiredTracks | default list }}
{{- if has $v.blueGreen.activeTrack $retired }}
{{- fail (printf "tree-of-thoughts: blueGreen.activeTrack %s is listed in blueGreen.retiredTracks: take it out (both tracks then run at full size), switch, and retire the other track afterwards" $v.blueGreen.activeTrack) }}
{{- end }}
{{- range $t := list "blue" "green" }}
{{- $live := not (has $t $retired) }}
- track: {{ $t }}
  suffix: {{ $t }}
  tag: {{ (ternary $v.blueGreen.blueTag $v.blueGreen.greenTag (eq $t "blue")) | quote }}
  replicas: {{ ternary $v.replicaCount $v.blueGreen.inactiveReplicas $live }}
  hpa: {{ and $live $v.autoscaling.enabled }}
{{- end }}
{{- else }}
- track: stable
  suffix: ""
  tag: ""
  replicas: {{ $v.replicaCount }}
  hpa: {{ $v.autoscaling.enabled }}
{{- end }}
{{- if $v.canary.enabled }}
- track: canary
  suffix: canary
  tag: {{ $v.canary.tag | quote }}
  replicas: {{ $v.canary.replicas }}
  hpa: false
{{- end }}
{{- end -}}

{{/* The track the main Service selects. */}}
{{- define "tree-of-thoughts.activeTrack" -}}
{{- if .Values.blueGreen.enabled -}}{{ .Values.blueGreen.activeTrack }}{{- else -}}stable{{- end -}}
{{- end -}}

{{- define "tree-of-thoughts.databaseSecretName" -}}
{{- $name := tpl .Values.database.secretName . -}}
{{- if not $name -}}
{{- fail "tree-of-thoughts: database.secretName is required (a Secret holding DATABASE_URL)" -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "tree-of-thoughts.secretName" -}}
{{- default (include "tree-of-thoughts.fullname" .) (tpl .Values.secrets.existingSecret .) -}}
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
{{- $g := .Values.global | default dict -}}
{{- $hosts := list -}}
{{- with dig "hosts" "treeOfThoughts" "" $g }}{{ $hosts = append $hosts . }}{{ end -}}
{{- range .Values.config.extraAllowedHosts }}{{ $hosts = append $hosts . }}{{ end -}}
{{- $domain := dig "clusterDomain" "cluster.local" $g -}}
{{- $services := list (include "tree-of-thoughts.fullname" .) -}}
{{- if .Values.canary.enabled }}{{ $services = append $services (include "tree-of-thoughts.withSuffix" (dict "base" (include "tree-of-thoughts.fullname" .) "suffix" "canary")) }}{{ end -}}
{{- range $svc := $services -}}
{{- range $n := list $svc (printf "%s.%s" $svc $.Release.Namespace) (printf "%s.%s.svc" $svc $.Release.Namespace) (printf "%s.%s.svc.%s" $svc $.Release.Namespace $domain) -}}
{{- $hosts = append $hosts $n -}}
{{- $hosts = append $hosts (printf "%s:%v" $n $.Values.service.port) -}}
{{- end -}}
{{- end -}}
{{- join "," (uniq $hosts) -}}
{{- end -}}

{{/* FORWARDED_ALLOW_IPS: global.forwardedAllowIps; standalone, the private ranges (any pod network). */}}
{{- define "tree-of-thoughts.forwardedAllowIps" -}}
{{- $g := .Values.global | default dict -}}
{{- join "," (dig "forwardedAllowIps" (list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16") $g) -}}
{{- end -}}
