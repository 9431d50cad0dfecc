{{/*
Routing table shared by the Ingress and the HTTPRoutes: one host per app (both apps serve /mcp).
Returns a YAML list of {app, host, service, canary, weight, port, paths}. Metrics ports are never routed;
/health is, for external uptime checks (/ready stays internal: it names failing dependencies).
*/}}
{{- define "mcp-platform.routes" -}}
{{- $g := .Values.global -}}
{{- $reg := index .Values "tool-registry" -}}
{{- $tot := index .Values "tree-of-thoughts" -}}
{{- if $reg.enabled }}
- app: tool-registry
  host: {{ $g.hosts.registry | quote }}
  service: {{ include "mcp-platform.registryName" . }}
  port: {{ $reg.service.port | default 8000 }}
  canary: {{ $reg.canary.enabled | default false }}
  weight: {{ $reg.canary.weight | default 0 }}
  paths: ["/mcp", "/api", "/.well-known/oauth-protected-resource", "/health"]
{{- end }}
{{- if $tot.enabled }}
- app: tree-of-thoughts
  host: {{ $g.hosts.treeOfThoughts | quote }}
  service: {{ include "mcp-platform.totName" . }}
  port: {{ $tot.service.port | default 8001 }}
  canary: {{ $tot.canary.enabled | default false }}
  weight: {{ $tot.canary.weight | default 0 }}
  paths: ["/mcp", "/api", "/oauth", "/.well-known", "/health"]
{{- end }}
{{- end -}}
