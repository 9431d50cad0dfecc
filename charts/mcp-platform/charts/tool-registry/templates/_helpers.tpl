{{/* Named templates are global across charts: every name is prefixed with "tool-registry.". */}}

{{- define "tool-registry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: "<release>-<name>" (no "release contains name" shortcut, so other charts of the
platform can predict it), or fullnameOverride.
*/}}
{{- define "tool-registry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tool-registry.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<base>-<suffix>" within a length limit, the base cut first: mcp-common.withSuffix (the library chart). */}}
{{- define "tool-registry.withSuffix" -}}
{{- include "mcp-common.withSuffix" . -}}
{{- end -}}

{{- define "tool-registry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Minimal, immutable selector labels. */}}
{{- define "tool-registry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tool-registry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "server"). */}}
{{- define "tool-registry.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "tool-registry.chart" $ctx }}
{{ include "tool-registry.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Values.image.tag | default $ctx.Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: {{ .component | default "server" }}
app.kubernetes.io/part-of: mcp-platform
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- include "mcp-common.commonLabels" $ctx }}
{{- end -}}

{{- define "tool-registry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tool-registry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference; call with (dict "ctx" $ "tag" "optional-tag"). */}}
{{- define "tool-registry.image" -}}
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
{{- define "tool-registry.tracks" -}}
{{- $v := .Values -}}
{{- if and $v.canary.enabled $v.blueGreen.enabled -}}
{{- fail "tool-registry: canary.enabled and blueGreen.enabled are mutually exclusive" -}}
{{- end -}}
{{- if $v.blueGreen.enabled }}
{{- $retired := $v.blueGreen.retiredTracks | default list }}
{{- if has $v.blueGreen.activeTrack $retired }}
{{- fail (printf "tool-registry: blueGreen.activeTrack %s is listed in blueGreen.retiredTracks: take it out (both tracks then run at full size), switch, and retire the other track afterwards" $v.blueGreen.activeTrack) }}
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
{{- define "tool-registry.activeTrack" -}}
{{- if .Values.blueGreen.enabled -}}{{ .Values.blueGreen.activeTrack }}{{- else -}}stable{{- end -}}
{{- end -}}

{{- define "tool-registry.databaseSecretName" -}}
{{- $name := tpl .Values.database.secretName . -}}
{{- if not $name -}}
{{- fail "tool-registry: database.secretName is required (a Secret holding DATABASE_URL)" -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "tool-registry.secretName" -}}
{{- default (include "tool-registry.fullname" .) (tpl .Values.secrets.existingSecret .) -}}
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
{{- $g := .Values.global | default dict -}}
{{- $hosts := list -}}
{{- with dig "hosts" "registry" "" $g }}{{ $hosts = append $hosts . }}{{ end -}}
{{- range .Values.config.extraAllowedHosts }}{{ $hosts = append $hosts . }}{{ end -}}
{{- $domain := dig "clusterDomain" "cluster.local" $g -}}
{{- $services := list (include "tool-registry.fullname" .) -}}
{{- if .Values.canary.enabled }}{{ $services = append $services (include "tool-registry.withSuffix" (dict "base" (include "tool-registry.fullname" .) "suffix" "canary")) }}{{ end -}}
{{- range $svc := $services -}}
{{- range $n := list $svc (printf "%s.%s" $svc $.Release.Namespace) (printf "%s.%s.svc" $svc $.Release.Namespace) (printf "%s.%s.svc.%s" $svc $.Release.Namespace $domain) -}}
{{- $hosts = append $hosts $n -}}
{{- $hosts = append $hosts (printf "%s:%v" $n $.Values.service.port) -}}
{{- end -}}
{{- end -}}
{{- join "," (uniq $hosts) -}}
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
{{- $g := .Values.global | default dict -}}
{{- join "," (dig "forwardedAllowIps" (list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16") $g) -}}
{{- end -}}

{{/* POLICY_FILE: inside the policy ConfigMap's mount, a directory (the kubelet swaps its content in
place on updates; a subPath mount would never see them). */}}
{{- define "tool-registry.policyDir" -}}/etc/tool-registry/policy{{- end -}}
{{- define "tool-registry.policyFile" -}}{{ include "tool-registry.policyDir" . }}/policy.yaml{{- end -}}
{{- define "tool-registry.policyConfigMap" -}}
{{- printf "%s-policy" (include "tool-registry.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}
