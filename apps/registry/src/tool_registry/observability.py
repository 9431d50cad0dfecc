"""The registry's Prometheus metrics. The chart's alerts use these names: keep them exact.

Production runs prometheus_client in multiprocess mode (one file per worker, summed by the
metrics port), so every Gauge says how its per-process values combine.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SEARCH_DURATION = Histogram(
    "registry_search_duration_seconds",
    "Search latency in seconds (query embedding included), by mode.",
    ["mode"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SEARCH_ZERO_RESULTS = Counter(
    "registry_search_zero_results",
    "Searches that returned no result, by mode.",
    ["mode"],
)
EMBEDDING_DURATION = Histogram(
    "registry_embedding_duration_seconds",
    "Time to embed one batch of texts (one provider call).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EMBEDDING_BATCH_TEXTS = Histogram(
    "registry_embedding_batch_texts",
    "Texts per model run of the local model's batch thread (concurrent queries share a run).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
EMBEDDING_ERRORS = Counter(
    "registry_embedding_errors",
    "Embedding calls that failed after retries, or were refused by the open circuit breaker.",
)
EMBEDDING_CACHE_HITS = Counter("embedding_cache_hits", "Query embeddings served from the in-memory LRU cache.")
EMBEDDING_CACHE_MISSES = Counter("embedding_cache_misses", "Query embeddings the LRU cache did not hold.")
TOOLS = Gauge(
    "registry_tools",
    "Tools in the catalogue, by status (refreshed by the background indexer and by /api/v1/stats).",
    ["status"],
    # Every replica reads the same table: the most recent reading is the truth.
    multiprocess_mode="livemostrecent",
)
UPSTREAM_SYNC_FAILURES = Counter(
    "registry_upstream_sync_failures",
    "Upstream MCP server syncs that failed, by server.",
    ["server"],
)
UPSTREAM_LAST_SYNC_SUCCESS = Gauge(
    "registry_upstream_last_sync_success_timestamp",
    "Unix time of the last successful sync of an upstream server (by any worker of this replica).",
    ["server"],
    multiprocess_mode="max",
)
POLICY_RELOAD_ERRORS = Counter(
    "registry_policy_reload_errors",
    "Reloads of POLICY_FILE that failed (unreadable or invalid); the last good policy stays in force.",
)
POLICY_LAST_RELOAD_SUCCESS = Gauge(
    "registry_policy_last_reload_success_timestamp",
    "Unix time the policy in force last matched a valid POLICY_FILE (start-up, or a reload check).",
    # A worker stuck on an old policy is the one that matters: report the stalest live worker.
    multiprocess_mode="livemin",
)
