"""The metrics port's multiprocess collector: live gauges count only processes that serve and are alive.

Value files are written with prometheus_client's own mmap format, as workers write them; the pids are
this process (playing uvicorn's parent), a live child process (a worker) and an exited one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from platform_common.metrics import _LiveMultiProcessCollector

HELP = "test gauge"


def write_gauge(directory: Path, mode: str, pid: int, value: float) -> None:
    values = MmapedDict(str(directory / f"gauge_{mode}_{pid}.db"))
    try:
        values.write_value(mmap_key("probe_up", "probe_up", [], [], HELP), value, 0.0)
    finally:
        values.close()


def exported(directory: Path, *, parent_serves: bool) -> list[float]:
    registry = CollectorRegistry()
    collector = _LiveMultiProcessCollector(registry, str(directory), parent_serves=parent_serves)
    return [s.value for m in collector.collect() for s in m.samples if s.name == "probe_up"]


def test_live_gauges_ignore_the_supervising_parent_and_dead_workers(tmp_path: Path) -> None:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        write_gauge(tmp_path, "livemin", os.getpid(), 0.0)  # the parent's value from import time
        write_gauge(tmp_path, "livemin", worker.pid, 1.0)
        write_gauge(tmp_path, "livemin", dead.pid, 0.0)  # a crashed worker's last value
        # Several workers: only the live worker counts, and the dead worker's file is removed.
        assert exported(tmp_path, parent_serves=False) == [1.0]
        assert not (tmp_path / f"gauge_livemin_{dead.pid}.db").exists()
        # One worker serving inside the parent: the parent's value counts.
        assert exported(tmp_path, parent_serves=True) == [0.0]
    finally:
        worker.kill()
        worker.wait()
