"""PostgreSQL goes away for 10 s under load and comes back: both apps degrade to 503 and heal alone.

The registry and the ToT server run as real ``serve`` processes on a PostgreSQL of their own
(fixed port, so it can be restarted where the apps expect it). A load client keeps writing
(registry: create tools; ToT: start game24 runs) and reading while probes poll ``/ready`` and
``/health``. The numbers the test measures are printed (``-s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from platform_common.db import Database, DatabaseUnavailable
from platform_common.embedded_postgres import EmbeddedPostgres
from tests.reliability.harness import (
    AppProcess,
    Sample,
    dedicated_postgres,
    registry_process,
    timed,
    tot_process,
)

CLIENT_TIMEOUT = 15.0  # longer than DATABASE_TIMEOUT_SECONDS (5 s) + a query: a 503 must come first
OUTAGE_SECONDS = 10.0
READY_WITHIN = 5.0
RECOVER_WITHIN = 5.0
PROBE_INTERVAL = 0.2


def test_embedded_postgres_restarts_on_the_same_port() -> None:
    """Regression: ``stop()`` removed the socket directory, so a second ``start()`` failed."""
    data_dir = Path(tempfile.mkdtemp(prefix="mcp-rel-pg-restart-"))
    data_dir.chmod(0o755)  # as root the server runs as nobody
    server = EmbeddedPostgres(data_dir)
    server.start()
    port = server.port
    server.stop()
    try:
        server.start()
        assert server.port == port
        server.wait_until_accepting(5)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


class Recorder:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.probes: list[tuple[str, str, Sample]] = []  # (app, path, sample)
        self.stop = asyncio.Event()

    async def loop(self, work: Callable[[int], Awaitable[Sample]], pause: float = 0.05) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            self.samples.append(await work(i))
            await asyncio.sleep(pause)

    async def probe(self, client: httpx.AsyncClient, app: str, url: str) -> None:
        while not self.stop.is_set():
            for path in ("/ready", "/health"):
                self.probes.append((app, path, await timed(client, f"{app} {path}", "GET", url + path, timeout=4)))
            await asyncio.sleep(PROBE_INTERVAL)


def _tool_body(i: int) -> dict[str, object]:
    return {
        "name": f"outage.tool_{i}",
        "description": f"Converts currency amounts, variant {i}.",
        "input_schema": {"type": "object", "properties": {"amount": {"type": "number"}}},
    }


@pytest.mark.slow
async def test_database_outage_under_load() -> None:
    with dedicated_postgres() as pg:
        registry = registry_process(pg.url)
        tot = tot_process(pg.url, MAX_ACTIVE_RUNS_PER_OWNER="1000")
        with registry, tot:
            pids = {app.name: app.pids() for app in (registry, tot)}
            await _outage(pg, registry, tot, pids)


async def _outage(pg: EmbeddedPostgres, registry: AppProcess, tot: AppProcess, pids: dict[str, list[int]]) -> None:
    rec = Recorder()
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits) as client:
        r, t = registry.url, tot.url

        def registry_write(i: int) -> Awaitable[Sample]:
            return timed(client, "registry create", "POST", f"{r}/api/v1/tools", json=_tool_body(i))

        def registry_list(_: int) -> Awaitable[Sample]:
            return timed(client, "registry list", "GET", f"{r}/api/v1/tools", params={"limit": 5})

        def registry_search(_: int) -> Awaitable[Sample]:
            return timed(client, "registry search", "POST", f"{r}/api/v1/search", json={"query": "convert money"})

        def tot_write(_: int) -> Awaitable[Sample]:
            body = {"task": "game24", "problem": "4 9 10 13", "breadth": 1, "evaluator": "heuristic"}
            return timed(client, "tot start run", "POST", f"{t}/api/v1/runs", json=body)

        def tot_list(_: int) -> Awaitable[Sample]:
            return timed(client, "tot list runs", "GET", f"{t}/api/v1/runs", params={"limit": 5})

        tasks = [
            asyncio.create_task(rec.loop(work))
            for work in (registry_write, registry_list, registry_search, tot_write, tot_list)
        ]
        tasks += [asyncio.create_task(rec.probe(client, app.name, app.url)) for app in (registry, tot)]

        await asyncio.sleep(3)
        stop_started = time.monotonic()
        await asyncio.to_thread(pg.stop)
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(pg.start)
        back_at = time.monotonic()
        await asyncio.sleep(10)
        rec.stop.set()
        await asyncio.gather(*tasks)

    report = _analyse(rec, stop_started, down_at, back_at)
    print("\n" + "\n".join(f"{k}: {v}" for k, v in report.items()))

    # Every request got an HTTP answer within its timeout (no hang, no reset), and no 500.
    unanswered = [s for s in rec.samples if s.status is None]
    assert not unanswered, unanswered[:5]
    problem_503 = (503, "application/problem+json")
    bad = [s for s in rec.samples if not s.ok and (s.status, s.content_type) != problem_503]
    assert not bad, (
        [(s.name, s.status, s.content_type, s.body) for s in bad[:5]],
        registry.error_lines(),
        tot.error_lines(),
    )
    # The outage was seen by every kind of request: the 503 path is what was tested, not luck.
    during = {s.name for s in rec.samples if s.status == 503}
    assert during == {s.name for s in rec.samples}, f"no 503 seen for {set(s.name for s in rec.samples) - during}"

    for app in ("registry", "tot"):
        probes = [(p, s) for a, p, s in rec.probes if a == app]
        assert all(s.status == 200 for p, s in probes if p == "/health"), f"{app} /health failed"
        assert report[f"{app} ready 503 after stop (s)"] is not None, f"{app} never reported not ready"
        assert report[f"{app} ready 503 after stop (s)"] <= READY_WITHIN
        assert report[f"{app} ready 200 after start (s)"] is not None, f"{app} never became ready again"
        assert report[f"{app} ready 200 after start (s)"] <= RECOVER_WITHIN
        late_failures = [
            s for s in rec.samples if s.name.startswith(app) and s.sent > back_at + RECOVER_WITHIN and not s.ok
        ]
        assert not late_failures, [(s.name, s.status, s.body) for s in late_failures[:5]]
        assert report[f"{app} requests all ok again after start (s)"] <= RECOVER_WITHIN

    # Same processes: healed without a restart.
    assert registry.process is not None and registry.process.poll() is None
    assert tot.process is not None and tot.process.poll() is None
    assert {app.name: app.pids() for app in (registry, tot)} == pids

    # Every acknowledged write survived.
    created = {s.body["name"] for s in rec.samples if s.name == "registry create" and s.ok}
    started = {s.body["id"] for s in rec.samples if s.name == "tot start run" and s.ok}
    assert created and started
    conn = await asyncpg.connect(pg.url)
    try:
        stored_tools = {row["name"] for row in await conn.fetch("SELECT name FROM tools")}
        stored_runs = {row["id"] for row in await conn.fetch("SELECT id::text AS id FROM tot_runs")}
    finally:
        await conn.close()
    assert created <= stored_tools, created - stored_tools
    assert started <= stored_runs, started - stored_runs


def _analyse(rec: Recorder, stop_started: float, down_at: float, back_at: float) -> dict[str, object]:
    report: dict[str, object] = {
        "requests": len(rec.samples),
        "2xx": sum(s.ok for s in rec.samples),
        "503": sum(s.status == 503 for s in rec.samples),
        "pg stop took (s)": round(down_at - stop_started, 2),
        "slowest 503 (s)": round(max((s.done - s.sent for s in rec.samples if s.status == 503), default=0), 3),
    }
    for app in ("registry", "tot"):
        ready = [s for a, p, s in rec.probes if a == app and p == "/ready"]
        first_down = next((s.done for s in ready if s.sent >= stop_started and s.status == 503), None)
        first_up = next((s.done for s in ready if s.sent >= back_at and s.status == 200), None)
        report[f"{app} ready 503 after stop (s)"] = None if first_down is None else round(first_down - stop_started, 2)
        report[f"{app} ready 200 after start (s)"] = None if first_up is None else round(first_up - back_at, 2)
        mine = [s for s in rec.samples if s.name.startswith(app)]
        last_bad = max((s.done for s in mine if s.sent >= down_at and not s.ok), default=back_at)
        report[f"{app} requests all ok again after start (s)"] = round(max(0.0, last_bad - back_at), 2)
    return report


@pytest.mark.parametrize("in_transaction", [False, True])
async def test_a_connection_killed_mid_query_is_a_503_and_the_pool_heals(
    database_url: str, in_transaction: bool
) -> None:
    """A backend killed mid-query (alone, or inside a transaction) is a 503, and the pool heals."""
    db = Database(database_url, max_size=2, timeout=5)
    admin = await asyncpg.connect(database_url)
    try:
        for _ in range(3):  # the same pool slots, again and again

            async def query() -> None:
                async with db.connection() as conn:
                    if in_transaction:
                        async with conn.transaction():
                            await conn.execute("SELECT pg_sleep(10)")
                    else:
                        await conn.execute("SELECT pg_sleep(10)")

            task = asyncio.create_task(query())
            pid = None
            for _ in range(100):
                pid = await admin.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)' AND state = 'active'"
                )
                if pid:
                    break
                await asyncio.sleep(0.05)
            assert pid
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(DatabaseUnavailable):
                await asyncio.wait_for(task, 5)
            assert await db.ping() is None
    finally:
        await admin.close()
        await db.close()


class _DyingConnection:
    """Stands in for a pooled connection whose server sent FATAL 57P01 but whose socket is not closed yet."""

    def __init__(self) -> None:
        self.terminated = False

    def terminate(self) -> None:
        self.terminated = True


class _ResetFailingPool:
    """asyncpg's release() runs a reset query first; on a half-dead connection that raises."""

    def __init__(self) -> None:
        self.conn = _DyingConnection()

    async def acquire(self, timeout: float) -> _DyingConnection:
        return self.conn

    async def release(self, conn: _DyingConnection) -> None:
        if not conn.terminated:
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            )


async def test_a_failed_reset_on_release_does_not_replace_the_503() -> None:
    """Regression (seen under load while PostgreSQL stopped): the release's error became a 500."""
    db = Database("postgresql://unused", timeout=1)
    pool = _ResetFailingPool()
    db._pool = pool  # type: ignore[assignment]
    with pytest.raises(DatabaseUnavailable):
        async with db.connection():
            raise asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command")
    assert pool.conn.terminated
    # A body that succeeded on a connection whose reset then fails keeps its result too.
    pool.conn = _DyingConnection()
    async with db.connection() as conn:
        result = "done"
    assert result == "done" and conn is pool.conn


async def test_a_connection_left_mid_operation_by_an_outage_is_a_503_and_dropped() -> None:
    """Regression (1 request in ~8,000 creates while PostgreSQL stopped and started 6 times): asyncpg's
    "another operation is in progress" on a pooled connection was a 500; it is the outage, so a 503."""
    db = Database("postgresql://unused", timeout=1)
    pool = _ResetFailingPool()
    db._pool = pool  # type: ignore[assignment]
    with pytest.raises(DatabaseUnavailable):
        async with db.connection():
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
    assert pool.conn.terminated
