{{/*
THE pod spec of the platform: every Deployment, StatefulSet, Job, CronJob and test Pod of the platform's
charts renders its spec with this template, so every pod honours the same values:

  values (the chart's, or a `pick` of them for Jobs: no sidecars or init containers there):
    imagePullSecrets (plus global.imagePullSecrets), podSecurityContext / containerSecurityContext
    (adapted for OpenShift: mcp-common.securityContext), nodeSelector, tolerations, affinity,
    priorityClassName, topologySpreadConstraints, automountServiceAccountToken, extraEnv, extraEnvFrom,
    extraVolumeMounts (main containers), extraVolumes, initContainers, sidecars.
  parameters:
    ctx (root context), containers (list of container dicts: the chart's own), volumes (list),
    serviceAccountName, automount (bool: the chart's containers need the API token), restartPolicy,
    terminationGracePeriodSeconds, enableServiceLinks, topologySpreadConstraints (the chart's own),
    podSecurityContext (overrides values.podSecurityContext).
*/}}
{{- define "mcp-common.podSpec" -}}
{{- $ctx := .ctx -}}
{{- $v := .values -}}
{{- $spec := dict -}}
{{- with .serviceAccountName }}{{ $_ := set $spec "serviceAccountName" . }}{{ end -}}
{{- $_ := set $spec "automountServiceAccountToken" (or .automount ($v.automountServiceAccountToken | default false)) -}}
{{- if hasKey . "enableServiceLinks" }}{{ $_ := set $spec "enableServiceLinks" .enableServiceLinks }}{{ end -}}
{{- with .restartPolicy }}{{ $_ := set $spec "restartPolicy" . }}{{ end -}}
{{- with .terminationGracePeriodSeconds }}{{ $_ := set $spec "terminationGracePeriodSeconds" (int .) }}{{ end -}}
{{- with (include "mcp-common.imagePullSecrets" (dict "secrets" $v.imagePullSecrets "ctx" $ctx) | fromYaml) }}
{{- $_ := set $spec "imagePullSecrets" .imagePullSecrets -}}
{{- end -}}
{{- with $v.priorityClassName }}{{ $_ := set $spec "priorityClassName" . }}{{ end -}}
{{- $podSecurity := .podSecurityContext | default $v.podSecurityContext | default dict -}}
{{- $_ := set $spec "securityContext" (include "mcp-common.securityContext" (dict "context" $podSecurity "ctx" $ctx) | fromYaml) -}}
{{- /* Init containers and sidecars without a securityContext get the chart's containerSecurityContext. */ -}}
{{- $extras := dict "initContainers" list "sidecars" list -}}
{{- range $key := list "initContainers" "sidecars" -}}
{{- range (index $v $key | default list) -}}
{{- $c := deepCopy . -}}
{{- if not $c.securityContext -}}
{{- $_ := set $c "securityContext" (include "mcp-common.securityContext" (dict "context" ($v.containerSecurityContext | default dict) "ctx" $ctx) | fromYaml) -}}
{{- end -}}
{{- $_ := set $extras $key (append (index $extras $key) $c) -}}
{{- end -}}
{{- end -}}
{{- with $extras.initContainers }}{{ $_ := set $spec "initContainers" . }}{{ end -}}
{{- $containers := list -}}
{{- range .containers -}}
{{- $c := deepCopy . -}}
{{- $_ := set $c "securityContext" (include "mcp-common.securityContext" (dict "context" ($c.securityContext | default $v.containerSecurityContext | default dict) "ctx" $ctx) | fromYaml) -}}
{{- with $v.extraEnv }}{{ $_ := set $c "env" (concat ($c.env | default list) .) }}{{ end -}}
{{- with $v.extraEnvFrom }}{{ $_ := set $c "envFrom" (concat ($c.envFrom | default list) .) }}{{ end -}}
{{- with $v.extraVolumeMounts }}{{ $_ := set $c "volumeMounts" (concat ($c.volumeMounts | default list) .) }}{{ end -}}
{{- $containers = append $containers $c -}}
{{- end -}}
{{- $_ := set $spec "containers" (concat $containers $extras.sidecars) -}}
{{- with (concat (.volumes | default list) ($v.extraVolumes | default list)) }}{{ $_ := set $spec "volumes" . }}{{ end -}}
{{- with $v.nodeSelector }}{{ $_ := set $spec "nodeSelector" . }}{{ end -}}
{{- with $v.tolerations }}{{ $_ := set $spec "tolerations" . }}{{ end -}}
{{- with $v.affinity }}{{ $_ := set $spec "affinity" . }}{{ end -}}
{{- with (concat (.topologySpreadConstraints | default list) ($v.topologySpreadConstraints | default list)) }}
{{- $_ := set $spec "topologySpreadConstraints" . -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}

{{/* The keys of a chart's values a Job or CronJob pod takes (scheduling, security, pull secrets: no sidecars). */}}
{{- define "mcp-common.jobPodValues" -}}
{{- toYaml (pick . "imagePullSecrets" "podSecurityContext" "containerSecurityContext" "nodeSelector" "tolerations" "affinity" "priorityClassName" "topologySpreadConstraints") -}}
{{- end -}}
