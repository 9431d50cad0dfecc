"""Prometheus metrics, served on their own port and correct with several worker processes.

Workers write to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode); the parent
process aggregates them on ``METRICS_PORT``. The multiprocess collector has no process metrics, so
we add ours summed over the parent and its workers. The runner sets the directory before this
module is first imported: prometheus_client picks its storage at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

HTTP_REQUESTS = Counter(
    "mcp_http_requests",
    "HTTP requests served, by method, route template and status code.",
    ["method", "path", "status"],
)
HTTP_DURATION = Histogram(
    "mcp_http_request_duration_seconds",
    "HTTP request duration in seconds, by method and route template.",
    ["method", "path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
DATABASE_UP = Gauge(
    "mcp_database_up",
    "1 when the last readiness check reached the database, else 0.",
    multiprocess_mode="livemin",
)


class _WorkerProcessCollector:
    """process_* metrics summed over this process and its direct children (the uvicorn workers)."""

    def collect(self) -> Iterable[Metric]:
        pids = [os.getpid(), *_children(os.getpid())]
        merged: dict[str, Metric] = {}
        for pid in pids:
            for metric in ProcessCollector(pid=_fixed(pid), registry=None).collect():
                # Per-process facts (start time, fd limit) are reported for the parent only.
                if pid != os.getpid() and metric.name.endswith(("start_time_seconds", "max_fds")):
                    continue
                target = merged.setdefault(metric.name, Metric(metric.name, metric.documentation, metric.type))
                for sample in metric.samples:
                    existing = next((s for s in target.samples if s.name == sample.name), None)
                    if existing is None:
                        target.samples.append(sample)
                    else:
                        target.samples[target.samples.index(existing)] = existing._replace(
                            value=existing.value + sample.value
                        )
        return merged.values()


def _fixed(pid: int) -> Callable[[], int]:
    return lambda: pid


def _children(parent: int) -> list[int]:
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(entry.name))
    return children


def start_metrics_server(host: str, port: int) -> None:
    """Serve the aggregated metrics of every worker on ``host:port`` (a daemon thread)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_WorkerProcessCollector())
    start_http_server(port, addr=host, registry=registry)
