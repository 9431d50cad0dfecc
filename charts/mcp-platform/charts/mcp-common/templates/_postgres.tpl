{{/*
PostgreSQL memory settings from the pod's limits, for the pgvector StatefulSet and the CloudNativePG
Cluster (docs/search.md, "PostgreSQL memory for large catalogues": the HNSW graph of a large catalogue
must stay in shared_buffers, and index builds must run in memory). M = the memory limit:
  shared_buffers M/4, effective_cache_size 3M/4, maintenance_work_mem min(M/8, 2 GiB),
  work_mem M/(4 x max_connections) within 4-64 MB, max_parallel_maintenance_workers = CPU limit - 1.
Call with (dict "resources" $resources "parameters" $explicit); renders the merged parameters as YAML,
explicit ones winning. Without a memory limit nothing is derived (PostgreSQL's defaults stay).
*/}}
{{- define "mcp-common.postgresParameters" -}}
{{- $explicit := .parameters | default dict -}}
{{- $derived := dict -}}
{{- $limits := (.resources | default dict).limits | default dict -}}
{{- with $limits.memory -}}
{{- $mib := int (include "mcp-common.quantityMiB" .) -}}
{{- $connections := int ($explicit.max_connections | default 100) -}}
{{- $_ := set $derived "shared_buffers" (printf "%dMB" (div $mib 4)) -}}
{{- $_ := set $derived "effective_cache_size" (printf "%dMB" (div (mul $mib 3) 4)) -}}
{{- $_ := set $derived "maintenance_work_mem" (printf "%dMB" (max 64 (min 2048 (div $mib 8)))) -}}
{{- $_ := set $derived "work_mem" (printf "%dMB" (max 4 (min 64 (div $mib (mul 4 $connections))))) -}}
{{- end -}}
{{- with $limits.cpu -}}
{{- $cpu := toString . -}}
{{- $cores := ternary (div (int (trimSuffix "m" $cpu)) 1000) (int (float64 $cpu)) (hasSuffix "m" $cpu) -}}
{{- $_ := set $derived "max_parallel_maintenance_workers" (toString (max 0 (sub $cores 1))) -}}
{{- end -}}
{{- toYaml (merge (deepCopy $explicit) $derived) -}}
{{- end -}}

{{/* A Kubernetes memory quantity ("4Gi", "512Mi", "2G", "1073741824") in MiB, rounded down. */}}
{{- define "mcp-common.quantityMiB" -}}
{{- $q := toString . -}}
{{- $units := list (list "Ki" 1024) (list "Mi" 1048576) (list "Gi" 1073741824) (list "Ti" 1099511627776) (list "k" 1000) (list "K" 1000) (list "M" 1000000) (list "G" 1000000000) (list "T" 1000000000000) -}}
{{- $bytes := 0.0 -}}
{{- $matched := false -}}
{{- range $units -}}
{{- if and (not $matched) (hasSuffix (index . 0) $q) -}}
{{- $bytes = mulf (float64 (trimSuffix (index . 0) $q)) (float64 (index . 1)) -}}
{{- $matched = true -}}
{{- end -}}
{{- end -}}
{{- if not $matched }}{{ $bytes = float64 $q }}{{ end -}}
{{- int (divf $bytes 1048576.0) -}}
{{- end -}}
