"""``mcp_database_up`` follows PostgreSQL in real ``serve`` processes with two uvicorn workers each.

Nobody calls ``/ready`` while the database is down or back: the value comes from the background probe
each worker runs in its lifespan (``platform_common.health.database_probe``). The metrics port is
scraped as Prometheus would; the multiprocess directory is inspected to show that only the workers
(never the uvicorn parent) hold a value, and that a killed worker's stale 0 stops counting.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from platform_common.health import DATABASE_PROBE_SECONDS, PROBE_TIMEOUT_SECONDS
from tests.reliability.harness import AppProcess, dedicated_postgres, descendants, registry_process, tot_process

# One probe period plus one probe timeout, plus scheduling slack on a loaded 2-core machine.
WITHIN = DATABASE_PROBE_SECONDS + PROBE_TIMEOUT_SECONDS + 4.0


def database_up(app: AppProcess) -> list[float]:
    """Every ``mcp_database_up`` sample the app's metrics port exports."""
    text = httpx.get(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5).text
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mcp_database_up"
    ]


def wait_for(read: Callable[[], list[float]], expected: list[float], timeout: float) -> float:
    """Seconds until ``read()`` equals ``expected``; fails with the last reading after ``timeout``."""
    started = time.monotonic()
    last: list[float] = []
    while time.monotonic() - started < timeout:
        last = read()
        if last == expected:
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"expected {expected} within {timeout:.0f}s, last read {last}")


def livemin_pids(directory: Path) -> set[int]:
    """Processes holding an ``mcp_database_up`` value (other livemin gauges share the files)."""
    pids = set()
    for file in directory.glob("gauge_livemin_*.db"):
        values = MmapedDict(str(file))
        try:
            if any('"mcp_database_up"' in entry[0] for entry in values.read_all_values()):
                pids.add(int(file.stem.rsplit("_", 1)[1]))
        finally:
            values.close()
    return pids


def test_database_up_follows_postgresql_with_two_workers() -> None:
    dirs = {name: Path(tempfile.mkdtemp(prefix=f"mcp-metrics-{name}-")) for name in ("registry", "tot")}
    with dedicated_postgres() as pg:
        url = pg.url
        apps = [
            registry_process(url, WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(dirs["registry"])),
            tot_process(url, WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(dirs["tot"])),
        ]
        try:
            for app in apps:
                app.start()
            for app in apps:
                wait_for(lambda app=app: database_up(app), [1.0], WITHIN)
                # Both workers have probed (a worker still starting would die on the outage below).
                wait_for(lambda app=app: [float(len(livemin_pids(dirs[app.name])))], [2.0], 30)
                # The livemin files belong to the two workers only: the parent holds no stale 0.
                workers = set(descendants(app.pid))
                assert livemin_pids(dirs[app.name]) <= workers, (app.name, livemin_pids(dirs[app.name]), workers)
                assert app.pid not in livemin_pids(dirs[app.name])

            stopped = time.monotonic()
            pg.stop()
            for app in apps:
                wait_for(lambda app=app: database_up(app), [0.0], WITHIN)
                print(f"{app.name}: mcp_database_up 0 after {time.monotonic() - stopped:.1f}s")

            restarted = time.monotonic()
            pg.start()
            # A worker killed now leaves its last value (0) behind; uvicorn starts a replacement. (Killed
            # while the database is down, the replacement's migrations would fail and uvicorn would exit.)
            registry = apps[0]
            victim = min(livemin_pids(dirs["registry"]) & set(descendants(registry.pid)))
            os.kill(victim, signal.SIGKILL)
            for app in apps:
                wait_for(lambda app=app: database_up(app), [1.0], WITHIN + 10)  # + a replacement worker's start
                print(f"{app.name}: mcp_database_up 1 after {time.monotonic() - restarted:.1f}s")
            assert victim not in livemin_pids(dirs["registry"]), "the dead worker's value file was not dropped"
        finally:
            for app in apps:
                app.stop()


def test_in_memory_tot_exports_no_database_up() -> None:
    """Without DATABASE_URL the ToT keeps runs in memory: no database, so no series (not a misleading 0).

    One worker serves inside the runner's own process: its app metrics are exported too (regression: the
    CLI imported prometheus_client before the runner chose multiprocess mode, and they were not).
    """
    with tot_process("", WORKERS="1") as app:
        assert httpx.get(f"{app.url}/health", timeout=5).status_code == 200
        text = httpx.get(f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5).text
        assert 'mcp_http_requests_total{method="GET",path="/health",status="200"}' in text
        assert "\nmcp_jwt_key_created_timestamp " in text
        assert database_up(app) == []
