"""The ToT server's Prometheus metrics. Dashboards and alerts use these names: keep them exact.

Production runs prometheus_client in multiprocess mode (one file per worker, summed by the
metrics port), so every Gauge says how its per-process values combine. The solve rate is
``tot_runs_total{outcome="solved"}`` over all runs, so it has no metric of its own.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tree_of_thoughts.engine import SearchStats

RUNS = Counter(
    "tot_runs",
    "Finished runs by strategy, task and outcome (solved, unsolved, failed, cancelled).",
    ["strategy", "task", "outcome"],
)
RUNS_ACTIVE = Gauge(
    "tot_runs_active",
    "Runs queued or searching on this replica.",
    # Each worker process counts its own runs; the replica's value is their sum.
    multiprocess_mode="livesum",
)
RUN_DURATION = Histogram(
    "tot_run_duration_seconds",
    "Search time of finished runs (queueing excluded), by strategy.",
    ["strategy"],
    buckets=(0.01, 0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 180.0, 600.0, 1800.0),
)
NODES_EXPANDED = Counter("tot_nodes_expanded", "Tree nodes expanded by finished runs.")
LLM_CALLS = Counter("tot_llm_calls", "LLM calls made by finished runs.")
LLM_TOKENS = Counter("tot_llm_tokens", "LLM tokens used by finished runs, by kind (prompt, completion).", ["kind"])


def record_run(strategy: str, task: str, outcome: str, stats: SearchStats | None) -> None:
    """Count one finished run; its work counters come from the engine's stats, when it got that far."""
    RUNS.labels(strategy, task, outcome).inc()
    if stats is None:
        return
    RUN_DURATION.labels(strategy).observe(stats.elapsed_seconds)
    NODES_EXPANDED.inc(stats.nodes_expanded)
    LLM_CALLS.inc(stats.llm_calls)
    LLM_TOKENS.labels("prompt").inc(stats.prompt_tokens)
    LLM_TOKENS.labels("completion").inc(stats.completion_tokens)
