"""Prometheus metrics, served on their own port and correct with several worker processes.

Workers write to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode); the parent
process aggregates them on ``METRICS_PORT``. The multiprocess collector has no process metrics, so
we add ours summed over the parent and its workers. The runner sets the directory before this
module is first imported: prometheus_client picks its storage at import time.

``mcp_database_up`` exists only in processes that probe a database (see ``set_database_up``): the
uvicorn parent and an in-memory Tree-of-Thoughts export no value rather than a misleading 0.
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
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

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
_database_up: Gauge | None = None


def set_database_up(up: bool) -> None:
    """Publish whether this process's last database probe succeeded (``mcp_database_up``).

    The gauge is created on the first call: an unlabelled multiprocess gauge writes its value file
    (holding 0) when constructed, and that 0 from a process that never probes (the uvicorn parent)
    would pin ``livemin`` at 0. Across workers the pod reports the minimum of the live workers.
    """
    global _database_up
    if _database_up is None:
        _database_up = Gauge(
            "mcp_database_up",
            "1 when this pod's last database probe (every few seconds, and on /ready) succeeded, else 0; "
            "the minimum over its worker processes.",
            multiprocess_mode="livemin",
        )
    _database_up.set(1 if up else 0)


class _LiveMultiProcessCollector(MultiProcessCollector):
    """The multiprocess collector, minus live-gauge values of processes that do not serve.

    uvicorn replaces a crashed worker but does not call ``mark_process_dead``: without this a dead
    worker's last ``mcp_database_up`` (or ``tot_runs_active``) would count forever. With several
    workers the parent only supervises: the live gauges it created at import (their initial 0) are
    left out too, or a ``livemin`` gauge would read 0 for ever.
    """

    def __init__(self, registry: CollectorRegistry, path: str, *, parent_serves: bool) -> None:
        super().__init__(registry, path)  # type: ignore[no-untyped-call]
        self._path = path
        self._parent_serves = parent_serves

    def collect(self) -> Iterable[Metric]:
        files = []
        for file in Path(self._path).glob("*.db"):
            pid = file.stem.rsplit("_", 1)[-1]
            if file.name.startswith("gauge_live") and pid.isdigit():
                if not _alive(int(pid)):
                    mark_process_dead(int(pid), self._path)  # type: ignore[no-untyped-call]
                    continue
                if int(pid) == os.getpid() and not self._parent_serves:
                    continue
            files.append(str(file))
        return self.merge(files, accumulate=True)  # type: ignore[no-any-return,no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


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


def start_metrics_server(host: str, port: int, *, workers: int = 1) -> None:
    """Serve the aggregated metrics of every worker on ``host:port`` (a daemon thread).

    With ``workers`` > 1 this process (uvicorn's parent) serves no request: its live gauges are ignored.
    """
    registry = CollectorRegistry()
    _LiveMultiProcessCollector(registry, os.environ["PROMETHEUS_MULTIPROC_DIR"], parent_serves=workers <= 1)
    registry.register(_WorkerProcessCollector())
    start_http_server(port, addr=host, registry=registry)
