{{/*
The objects both app charts make the same way, around their Deployments: the Services (main + canary),
one HPA per autoscaled track, the PDB of the active track and the ServiceMonitor. Each app chart's
template file is one include of these, with its root context.
*/}}

{{- define "mcp-common.hpa" -}}
{{- $fullname := include "mcp-common.fullname" . }}
{{- range $t := include "mcp-common.tracks" . | fromYamlArray }}
{{- if $t.hpa }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mcp-common.withSuffix" (dict "base" $fullname "suffix" $t.suffix) }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "mcp-common.labels" (dict "ctx" $ "component" "server") | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "mcp-common.withSuffix" (dict "base" $fullname "suffix" $t.suffix) }}
  minReplicas: {{ $.Values.autoscaling.minReplicas }}
  maxReplicas: {{ $.Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $.Values.autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $.Values.autoscaling.targetMemoryUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ $.Values.autoscaling.scaleDownStabilizationWindowSeconds }}
      policies:
        - type: Percent
          value: 50
          periodSeconds: 60
    scaleUp:
      stabilizationWindowSeconds: {{ $.Values.autoscaling.scaleUpStabilizationWindowSeconds }}
      policies:
        - type: Percent
          value: 100
          periodSeconds: 30
        - type: Pods
          value: 4
          periodSeconds: 30
      selectPolicy: Max
{{- end }}
{{- end }}
{{- end -}}

{{- define "mcp-common.pdb" -}}
{{/*
A PDB is only useful, and only harmless, when more than one pod is guaranteed: with a single
replica, maxUnavailable 1 protects nothing and minAvailable 1 would block node drains forever.
*/}}
{{- $minPods := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled }}
{{- if and .Values.podDisruptionBudget.enabled (gt (int $minPods) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mcp-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "mcp-common.labels" (dict "ctx" . "component" "server") | nindent 4 }}
spec:
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "mcp-common.selectorLabels" . | nindent 6 }}
      track: {{ include "mcp-common.activeTrack" . }}
{{- end }}
{{- end -}}

{{- define "mcp-common.services" -}}
{{- $fullname := include "mcp-common.fullname" . }}
{{- $services := list (dict "name" $fullname "track" (include "mcp-common.activeTrack" .)) }}
{{- if .Values.canary.enabled }}
{{- $services = append $services (dict "name" (include "mcp-common.withSuffix" (dict "base" $fullname "suffix" "canary")) "track" "canary") }}
{{- end }}
{{- range $s := $services }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $s.name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "mcp-common.labels" (dict "ctx" $ "component" "server") | nindent 4 }}
    {{- if eq $s.track "canary" }}
    track: canary
    {{- end }}
  {{- with $.Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $.Values.service.type }}
  ports:
    - name: http
      port: {{ $.Values.service.port }}
      targetPort: http
      protocol: TCP
    - name: metrics
      port: {{ $.Values.service.metricsPort }}
      targetPort: metrics
      protocol: TCP
  selector:
    {{- include "mcp-common.selectorLabels" $ | nindent 4 }}
    track: {{ $s.track }}
{{- end }}
{{- end -}}

{{- define "mcp-common.serviceMonitor" -}}
{{- /* Skipped silently when the Prometheus Operator CRDs are absent; the umbrella NOTES warn. */ -}}
{{- if and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "mcp-common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "mcp-common.labels" (dict "ctx" . "component" "server") | nindent 4 }}
    {{- with .Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  # job="<app name>" for the main and the canary Service alike; the alerts filter on it.
  jobLabel: app.kubernetes.io/name
  targetLabels:
    - app.kubernetes.io/instance
  selector:
    matchLabels:
      {{- include "mcp-common.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .Release.Namespace }}
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ .Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.serviceMonitor.scrapeTimeout }}
{{- end }}
{{- end -}}
