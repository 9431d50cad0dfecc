{{/*
What the app charts (tool-registry, tree-of-thoughts) share: their names, labels, images, tracks and
hosts. Each app chart keeps its own prefixed names ("tool-registry.fullname", ...) as one-line
delegations here, so its templates read as before; messages name the calling chart (.Chart.Name).
Called with the app chart's root context unless said otherwise.
*/}}

{{- define "mcp-common.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: "<release>-<name>" (no "release contains name" shortcut, so other charts of the
platform can predict it), or fullnameOverride.
*/}}
{{- define "mcp-common.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mcp-common.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-common.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Minimal, immutable selector labels. */}}
{{- define "mcp-common.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels; call with (dict "ctx" $ "component" "server"). */}}
{{- define "mcp-common.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "mcp-common.chart" $ctx }}
{{ include "mcp-common.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Values.image.tag | default $ctx.Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: {{ .component | default "server" }}
app.kubernetes.io/part-of: mcp-platform
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- include "mcp-common.commonLabels" $ctx }}
{{- end -}}

{{- define "mcp-common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcp-common.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An app's image; call with (dict "ctx" $ "tag" "optional track tag"). A digest pins it, unless a track has its own tag. */}}
{{- define "mcp-common.appImage" -}}
{{- $img := .ctx.Values.image -}}
{{- if and $img.digest (not .tag) -}}
{{- include "mcp-common.image" (dict "image" $img "ctx" .ctx) -}}
{{- else -}}
{{- include "mcp-common.image" (dict "image" (dict "repository" $img.repository "tag" (.tag | default $img.tag | default .ctx.Chart.AppVersion)) "ctx" .ctx) -}}
{{- end -}}
{{- end -}}

{{/*
Deployment tracks, as a YAML list of {track, suffix, tag, replicas, hpa}.
- default:     one track "stable" (Deployment "<fullname>").
- blueGreen:   tracks "blue" and "green", each at full size (replicaCount or its own HPA, named
               after the track) until the operator lists it in blueGreen.retiredTracks, which scales
               it to blueGreen.inactiveReplicas; the Service selects the active track, which can
               never be retired. Switching is two steps (docs/operations.md), never a capacity cliff.
- canary:      an extra track "canary" ("<fullname>-canary", own Service, fixed replicas).
*/}}
{{- define "mcp-common.tracks" -}}
{{- $v := .Values -}}
{{- if and $v.canary.enabled $v.blueGreen.enabled -}}
{{- fail (printf "%s: canary.enabled and blueGreen.enabled are mutually exclusive" .Chart.Name) -}}
{{- end -}}
{{- if $v.blueGreen.enabled }}
{{- $retired := $v.blueGreen.retiredTracks | default list }}
{{- if has $v.blueGreen.activeTrack $retired }}
{{- fail (printf "%s: blueGreen.activeTrack %s is listed in blueGreen.retiredTracks: take it out (both tracks then run at full size), switch, and retire the other track afterwards" .Chart.Name $v.blueGreen.activeTrack) }}
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
{{- define "mcp-common.activeTrack" -}}
{{- if .Values.blueGreen.enabled -}}{{ .Values.blueGreen.activeTrack }}{{- else -}}stable{{- end -}}
{{- end -}}

{{- define "mcp-common.databaseSecretName" -}}
{{- $name := tpl .Values.database.secretName . -}}
{{- if not $name -}}
{{- fail (printf "%s: database.secretName is required (a Secret holding DATABASE_URL)" .Chart.Name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "mcp-common.secretName" -}}
{{- default (include "mcp-common.fullname" .) (tpl .Values.secrets.existingSecret .) -}}
{{- end -}}

{{/*
Host header values accepted by /mcp: the public host (global.hosts.<hostKey>), extra hosts, and the
Services' DNS names with and without port. Call with (dict "ctx" $ "hostKey" "registry").
*/}}
{{- define "mcp-common.allowedHosts" -}}
{{- $ctx := .ctx -}}
{{- $g := $ctx.Values.global | default dict -}}
{{- $hosts := list -}}
{{- with dig "hosts" .hostKey "" $g }}{{ $hosts = append $hosts . }}{{ end -}}
{{- range $ctx.Values.config.extraAllowedHosts }}{{ $hosts = append $hosts . }}{{ end -}}
{{- $domain := dig "clusterDomain" "cluster.local" $g -}}
{{- $services := list (include "mcp-common.fullname" $ctx) -}}
{{- if $ctx.Values.canary.enabled }}{{ $services = append $services (include "mcp-common.withSuffix" (dict "base" (include "mcp-common.fullname" $ctx) "suffix" "canary")) }}{{ end -}}
{{- $ns := $ctx.Release.Namespace -}}
{{- range $svc := $services -}}
{{- range $n := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns $domain) -}}
{{- $hosts = append $hosts $n -}}
{{- $hosts = append $hosts (printf "%s:%v" $n $ctx.Values.service.port) -}}
{{- end -}}
{{- end -}}
{{- join "," (uniq $hosts) -}}
{{- end -}}

{{/* FORWARDED_ALLOW_IPS: global.forwardedAllowIps; standalone, the private ranges (any pod network). */}}
{{- define "mcp-common.forwardedAllowIps" -}}
{{- $g := .Values.global | default dict -}}
{{- join "," (dig "forwardedAllowIps" (list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16") $g) -}}
{{- end -}}

{{/*
AUTH_NONE_ALLOW_NON_LOOPBACK: pods listen on 0.0.0.0, where the apps refuse AUTH_MODE=none unless told
otherwise; fail at render instead of leaving pods in a crash loop, and say which value accepts the risk.
*/}}
{{- define "mcp-common.authNoneAllowNonLoopback" -}}
{{- $auth := .Values.config.auth -}}
{{- if and (eq $auth.mode "none") (not $auth.allowNoneOnNetwork) -}}
{{- fail (printf "%s: config.auth.mode none serves every caller on the pod network without authentication; set %s.config.auth.allowNoneOnNetwork=true to accept that (never in production)" .Chart.Name .Chart.Name) -}}
{{- end -}}
{{- $auth.allowNoneOnNetwork | default false | toString -}}
{{- end -}}
