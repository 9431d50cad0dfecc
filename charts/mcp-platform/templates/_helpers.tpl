{{/* Named templates are global across charts: every name is prefixed with "mcp-platform.". */}}

{{- define "mcp-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<base>-<suffix>" within a length limit, the base cut first: mcp-common.withSuffix (the library chart). */}}
{{- define "mcp-platform.withSuffix" -}}
{{- include "mcp-common.withSuffix" . -}}
{{- end -}}

{{- define "mcp-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-platform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Call with (dict "ctx" $ "component" "..."). */}}
{{- define "mcp-platform.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "mcp-platform.chart" $ctx }}
{{ include "mcp-platform.selectorLabels" $ctx }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: mcp-platform
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
{{- include "mcp-common.commonLabels" $ctx }}
{{- end -}}

{{/* Names of the subcharts' resources (their fullname rule: "<release>-<name>" or fullnameOverride). */}}
{{- define "mcp-platform.registryName" -}}
{{- $v := index .Values "tool-registry" -}}
{{- $v.fullnameOverride | default (printf "%s-%s" .Release.Name ($v.nameOverride | default "tool-registry")) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.totName" -}}
{{- $v := index .Values "tree-of-thoughts" -}}
{{- $v.fullnameOverride | default (printf "%s-%s" .Release.Name ($v.nameOverride | default "tree-of-thoughts")) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* 52, like the pgvector subchart: a StatefulSet's controller-revision-hash label is "<name>-<hash>". */}}
{{- define "mcp-platform.pgvectorName" -}}
{{- $v := .Values.pgvector -}}
{{- $v.fullnameOverride | default (printf "%s-%s" .Release.Name ($v.nameOverride | default "pgvector")) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL for the apps. */}}
{{- define "mcp-platform.databaseSecretName" -}}
{{- if and (eq .Values.database.mode "external") .Values.database.external.existingSecret -}}
{{- .Values.database.external.existingSecret -}}
{{- else -}}
{{- printf "%s-database" .Release.Name -}}
{{- end -}}
{{- end -}}

{{/* The application role of the embedded or CloudNativePG database. */}}
{{- define "mcp-platform.databaseUser" -}}
{{- ternary .Values.pgvector.auth.username .Values.database.cloudnativepg.owner (eq .Values.database.mode "embedded") -}}
{{- end -}}

{{/*
The database URLs, without a password, of the embedded or CloudNativePG database, as YAML
{KEY: URL}: database-secret.yaml renders them, or database-credentials.yaml hands them to its Job.
*/}}
{{- define "mcp-platform.databaseUrls" -}}
{{- $ns := .Release.Namespace -}}
{{- $user := include "mcp-platform.databaseUser" . -}}
{{- if eq .Values.database.mode "embedded" -}}
{{- $url := printf "postgresql://%s@%s.%s.svc:%v/%s" $user (include "mcp-platform.pgvectorName" .) $ns .Values.pgvector.service.port .Values.pgvector.auth.database -}}
DATABASE_URL: {{ $url }}
DATABASE_DIRECT_URL: {{ $url }}
{{- else if eq .Values.database.mode "cloudnativepg" -}}
{{- $c := .Values.database.cloudnativepg -}}
{{- $cluster := include "mcp-platform.cnpgClusterName" . -}}
{{- $rw := printf "%s-rw.%s.svc" $cluster $ns -}}
{{- $primary := ternary (printf "%s-pooler-rw.%s.svc" $cluster $ns) $rw $c.pooler.enabled -}}
{{- $fmt := "postgresql://%s@%s:5432/%s?sslmode=require" }}
DATABASE_URL: {{ printf $fmt $user $primary $c.database }}
{{- if gt (int $c.instances) 1 }}
DATABASE_READ_URL: {{ printf $fmt $user (printf "%s-ro.%s.svc" $cluster $ns) $c.database }}
{{- end }}
DATABASE_DIRECT_URL: {{ printf $fmt $user $rw $c.database }}
{{- end -}}
{{- end -}}

{{- define "mcp-platform.cnpgClusterName" -}}
{{- .Values.database.cloudnativepg.clusterName | default (printf "%s-db" .Release.Name) | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-platform.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "mcp-platform.fullname" .)) -}}
{{- end -}}

{{/* The registry's image (the migrations Job and the helm test run in it), through global.imageRegistry. */}}
{{- define "mcp-platform.registryImage" -}}
{{- include "mcp-common.image" (dict "image" (index .Values "tool-registry").image "tag" .Chart.AppVersion "ctx" .) -}}
{{- end -}}

{{/*
The registry finds the Tree-of-Thoughts JWKS (and, without public hosts, the issuer) at the Service the
tree-of-thoughts chart makes by default (tool-registry.totServiceUrl); that chart's real name and port
come from mcp-platform.totName and its service.port.
*/}}
{{- define "mcp-platform.validateTotUrl" -}}
{{- $reg := index .Values "tool-registry" -}}
{{- $tot := index .Values "tree-of-thoughts" -}}
{{- if and $reg.enabled $tot.enabled -}}
{{- $real := printf "http://%s:%v" (include "mcp-platform.totName" .) $tot.service.port -}}
{{- if and (ne $real (include "tool-registry.totServiceUrl" .)) (not $reg.config.auth.jwksUrl) -}}
{{- fail (printf "the tree-of-thoughts Service is %s (nameOverride, fullnameOverride or service.port changed): set tool-registry.config.auth.jwksUrl=%s/.well-known/jwks.json (and tool-registry.config.auth.issuer when global.hosts.treeOfThoughts is empty)" $real $real) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
With database.generatePasswords false nothing is generated (GitOps-safe): the passwords come from a
Secret managed elsewhere, which each app reads as DATABASE_PASSWORD (<app>.database.passwordSecret).
*/}}
{{- define "mcp-platform.passwordSecretName" -}}
{{- $mode := .Values.database.mode -}}
{{- if .Values.database.generatePasswords -}}
{{- else if eq $mode "embedded" -}}
{{- tpl .Values.pgvector.auth.existingSecret . -}}
{{- else if eq $mode "cloudnativepg" -}}
{{- printf "%s-app" (include "mcp-platform.cnpgClusterName" .) -}}
{{- end -}}
{{- end -}}

{{/*
Every credential can come from an existing Secret; an existing Secret and inline values for the same
credentials is refused (the inline ones would be silently ignored).
*/}}
{{- define "mcp-platform.validateSecrets" -}}
{{- $reg := index .Values "tool-registry" -}}
{{- $tot := index .Values "tree-of-thoughts" -}}
{{- if and $reg.enabled $reg.secrets.existingSecret (or $reg.secrets.embeddingApiKey $reg.secrets.apiKeyDigests) -}}
{{- fail "tool-registry.secrets.existingSecret is set, so secrets.embeddingApiKey and secrets.apiKeyDigests would be ignored: put them in that Secret (EMBEDDING_API_KEY, API_KEYS) and unset them" -}}
{{- end -}}
{{- if and $tot.enabled $tot.secrets.existingSecret (or $tot.secrets.llmApiKey $tot.secrets.oauthClients) -}}
{{- fail "tree-of-thoughts.secrets.existingSecret is set, so secrets.llmApiKey and secrets.oauthClients would be ignored: put them in that Secret (LLM_API_KEY, OAUTH_CLIENTS) and unset them" -}}
{{- end -}}
{{- if and .Values.tests.oauth.existingSecret .Values.tests.oauth.clientSecret -}}
{{- fail "tests.oauth.existingSecret is set, so tests.oauth.clientSecret would be ignored: put it in that Secret and unset it" -}}
{{- end -}}
{{- if and .Values.database.external.existingSecret .Values.database.external.url -}}
{{- fail "database.external: set existingSecret or url, not both" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-platform.validatePasswords" -}}
{{- $mode := .Values.database.mode -}}
{{- if and (not .Values.database.generatePasswords) (eq $mode "embedded") -}}
{{- $secret := tpl .Values.pgvector.auth.existingSecret . -}}
{{- if or (not $secret) (eq $secret (printf "%s-database" .Release.Name)) -}}
{{- fail "database.generatePasswords=false: set pgvector.auth.existingSecret to a Secret you manage with the keys password (application role) and postgres-password (superuser)" -}}
{{- end -}}
{{- end -}}
{{- $want := include "mcp-platform.passwordSecretName" . -}}
{{- if ne $mode "external" -}}
{{- range $app := list "tool-registry" "tree-of-thoughts" -}}
{{- $v := index $.Values $app -}}
{{- if $v.enabled -}}
{{- $got := tpl $v.database.passwordSecret.name $ -}}
{{- if and $want (ne $got $want) -}}
{{- fail (printf "database.generatePasswords=false: the database URL carries no password; set %s.database.passwordSecret.name=%s (key %s)" $app $want $v.database.passwordSecret.key) -}}
{{- end -}}
{{- if and (not $want) $got -}}
{{- fail (printf "%s.database.passwordSecret.name is only used with database.generatePasswords=false (the generated URL carries the password): unset it" $app) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Connection budget (cloudnativepg mode). Each app opens up to pods x config.workers x
config.databasePoolMax connections, pods being autoscaling.maxReplicas (else replicaCount), doubled with
blueGreen (both tracks run at full size during a switch) plus canary.replicas. PgBouncer runs in session
mode (the only one the apps support: session advisory locks, asyncpg prepared statements), where every
client connection holds a server connection, so:
- clients + 20 (superuser, replication, the migrations Job, backups) <= parameters.max_connections;
- with the pooler, clients <= pooler default_pool_size and max_client_conn of ONE PgBouncer instance
  (while the other restarts, one carries every client).
*/}}
{{- define "mcp-platform.validateConnections" -}}
{{- if eq .Values.database.mode "cloudnativepg" -}}
{{- $c := .Values.database.cloudnativepg -}}
{{- $clients := 0 -}}
{{- $parts := list -}}
{{- range $app := list "tool-registry" "tree-of-thoughts" -}}
{{- $v := index $.Values $app -}}
{{- if $v.enabled -}}
{{- $pods := int (ternary $v.autoscaling.maxReplicas $v.replicaCount $v.autoscaling.enabled) -}}
{{- if $v.blueGreen.enabled }}{{ $pods = mul $pods 2 }}{{ end -}}
{{- if $v.canary.enabled }}{{ $pods = add $pods $v.canary.replicas }}{{ end -}}
{{- $n := mul $pods $v.config.workers $v.config.databasePoolMax -}}
{{- $clients = add $clients $n -}}
{{- $parts = append $parts (printf "%s %d pods x %v workers x %v databasePoolMax = %d" $app $pods $v.config.workers $v.config.databasePoolMax $n) -}}
{{- end -}}
{{- end -}}
{{- $why := join ", " $parts -}}
{{- $maxConn := int (get $c.parameters "max_connections" | default "100") -}}
{{- if gt (add $clients 20) $maxConn -}}
{{- fail (printf "database: the apps may open %d connections (%s); with 20 reserved that exceeds database.cloudnativepg.parameters.max_connections=%d: raise it, or lower maxReplicas, workers or databasePoolMax" $clients $why $maxConn) -}}
{{- end -}}
{{- if $c.pooler.enabled -}}
{{- $pool := int (get $c.pooler.parameters "default_pool_size" | default "20") -}}
{{- $maxClient := int (get $c.pooler.parameters "max_client_conn" | default "100") -}}
{{- if or (gt $clients $pool) (gt $clients $maxClient) -}}
{{- fail (printf "database: the apps may open %d connections (%s), but one PgBouncer instance in session mode serves at most default_pool_size=%d server and max_client_conn=%d client connections: raise database.cloudnativepg.pooler.parameters, or lower maxReplicas, workers or databasePoolMax" $clients $why $pool $maxClient) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Consistency checks between the umbrella's settings and the subcharts' (subcharts cannot read the
parent's values, so the wiring is validated here, with messages that say what to set).
*/}}
{{- define "mcp-platform.validate" -}}
{{- $mode := .Values.database.mode -}}
{{- if and (eq $mode "embedded") (not .Values.pgvector.enabled) -}}
{{- fail "database.mode=embedded needs pgvector.enabled=true" -}}
{{- end -}}
{{- if and (ne $mode "embedded") .Values.pgvector.enabled -}}
{{- fail (printf "database.mode=%s: set pgvector.enabled=false (the embedded database is only for database.mode=embedded)" $mode) -}}
{{- end -}}
{{- if and (eq $mode "external") (not .Values.database.external.existingSecret) (not .Values.database.external.url) -}}
{{- fail "database.mode=external needs database.external.existingSecret (a Secret with the key DATABASE_URL) or database.external.url" -}}
{{- end -}}
{{- include "mcp-platform.validateTotUrl" . -}}
{{- include "mcp-platform.validatePasswords" . -}}
{{- include "mcp-platform.validateSecrets" . -}}
{{- include "mcp-platform.validateConnections" . -}}
{{- $want := include "mcp-platform.databaseSecretName" . -}}
{{- range $app := list "tool-registry" "tree-of-thoughts" -}}
{{- $v := index $.Values $app -}}
{{- if $v.enabled -}}
{{- $got := tpl $v.database.secretName $ -}}
{{- if ne $got $want -}}
{{- fail (printf "%s.database.secretName renders to %q but the database Secret is %q: set %s.database.secretName=%s" $app $got $want $app $want) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
