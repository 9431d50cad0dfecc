"""Soak: both apps under a fixed request rate for SOAK_SECONDS; no errors, no leaks.

The mix: registry searches over REST and over MCP (``find_tools``), tool calls through the
registry (``call_tool`` to ``tot.list_strategies``: the ToT server registered as an upstream MCP
server), and ToT game24 runs (start, then read). After a 30 s warm-up the test records each app's
RSS (VmRSS of the process and any workers), open file descriptors and the PostgreSQL client
connections, and compares them with the end of the run. ``SOAK_SECONDS=60`` shortens it locally.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time

import httpx
import pytest

from tests.reliability.harness import (
    MCP_HEADERS,
    AppProcess,
    Sample,
    dedicated_postgres,
    mcp_request,
    open_fds,
    pg_connections,
    registry_process,
    rss_kib,
    timed,
    tot_process,
)

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
WARMUP_SECONDS = 30.0
RATE_PER_SECOND = 20.0
MAX_RSS_GROWTH = 0.10
POOL_MAX = 10


def _footprint(app: AppProcess) -> tuple[int, int]:
    pids = app.pids()
    return sum(rss_kib(pid) for pid in pids), sum(open_fds(pid) for pid in pids)


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 240)
async def test_soak_at_a_fixed_rate() -> None:
    assert SOAK_SECONDS > WARMUP_SECONDS, "SOAK_SECONDS must be longer than the warm-up"
    with dedicated_postgres() as pg:
        registry = registry_process(pg.url, DATABASE_POOL_MAX=str(POOL_MAX))
        tot = tot_process(pg.url, MAX_ACTIVE_RUNS_PER_OWNER="1000", DATABASE_POOL_MAX=str(POOL_MAX))
        with tot, registry:
            await _soak(pg.url, registry, tot)


async def _soak(admin_url: str, registry: AppProcess, tot: AppProcess) -> None:
    r, t = registry.url, tot.url
    async with httpx.AsyncClient(timeout=15, limits=httpx.Limits(max_connections=40)) as client:
        items = [
            {
                "name": f"soak.tool_{i}",
                "description": f"{topic} helper number {i}.",
                "input_schema": {"type": "object"},
                "category": topic.lower(),
            }
            for i, topic in zip(range(60), itertools.cycle(["Weather", "Finance", "Calendar", "Email"]), strict=False)
        ]
        assert (await client.post(f"{r}/api/v1/tools/import", json=items)).status_code == 200
        server = {"name": "tot", "url": f"{t}/mcp", "auto_approve": True}
        assert (await client.post(f"{r}/api/v1/servers", json=server)).status_code in (200, 201)
        assert (await client.post(f"{r}/api/v1/servers/tot/sync")).status_code == 200

        queries = itertools.cycle(["weather tomorrow", "convert currency", "schedule a meeting", "send an email"])

        async def rest_search() -> Sample:
            return await timed(
                client, "registry REST search", "POST", f"{r}/api/v1/search", json={"query": next(queries)}
            )

        async def mcp_search() -> Sample:
            body = mcp_request("tools/call", {"name": "find_tools", "arguments": {"query": next(queries)}})
            return await timed(client, "registry MCP find_tools", "POST", f"{r}/mcp", json=body, headers=MCP_HEADERS)

        async def mcp_call_through_registry() -> Sample:
            args = {"name": "tot.list_strategies", "arguments": {}}
            body = mcp_request("tools/call", {"name": "call_tool", "arguments": args})
            return await timed(client, "registry MCP call_tool", "POST", f"{r}/mcp", json=body, headers=MCP_HEADERS)

        async def tot_run() -> Sample:
            run = {"task": "game24", "problem": "4 9 10 13", "breadth": 1, "evaluator": "heuristic"}
            started = await timed(client, "tot start run", "POST", f"{t}/api/v1/runs", json=run)
            if not started.ok:
                return started
            return await timed(client, "tot read run", "GET", f"{t}/api/v1/runs/{started.body['id']}")

        mix = itertools.cycle([rest_search, mcp_search, mcp_call_through_registry, tot_run])
        samples: list[Sample] = []
        footprints: list[tuple[float, dict[str, tuple[int, int]], int]] = []
        in_flight: set[asyncio.Task[Sample]] = set()
        started_at = time.monotonic()
        next_sample = started_at + WARMUP_SECONDS
        for tick in itertools.count():
            due = started_at + tick / RATE_PER_SECOND
            now = time.monotonic()
            if now - started_at >= SOAK_SECONDS:
                break
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(next(mix)())
            in_flight.add(task)
            task.add_done_callback(lambda done: (in_flight.discard(done), samples.append(done.result())))
            if time.monotonic() >= next_sample:
                footprints.append(
                    (
                        time.monotonic() - started_at,
                        {app.name: _footprint(app) for app in (registry, tot)},
                        await pg_connections(admin_url),
                    )
                )
                next_sample += 10
        await asyncio.gather(*in_flight)
        footprints.append(
            (
                time.monotonic() - started_at,
                {app.name: _footprint(app) for app in (registry, tot)},
                await pg_connections(admin_url),
            )
        )

    errors = [(s.name, s.status, s.error, s.body) for s in samples if not s.ok]
    errors += [(s.name, s.body) for s in samples if s.ok and "MCP" in s.name and s.body["result"].get("isError")]
    latencies = sorted(s.done - s.sent for s in samples)
    first, last = footprints[0], footprints[-1]
    print(
        f"\nsoak {SOAK_SECONDS:.0f} s at {RATE_PER_SECOND:g}/s: {len(samples)} requests, {len(errors)} errors, "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )
    for name in ("registry", "tot"):
        rss0, fd0 = first[1][name]
        rss1, fd1 = last[1][name]
        peak = max(f[1][name][0] for f in footprints)
        print(
            f"{name}: RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB ({(rss1 - rss0) / rss0:+.1%}, peak "
            f"{peak / 1024:.1f}), fds {fd0} -> {fd1}"
        )
    print(f"pg client connections {first[2]} -> {last[2]} (max {max(f[2] for f in footprints)})")

    assert not errors, errors[:5]
    for name in ("registry", "tot"):
        rss0, fd0 = first[1][name]
        rss1, fd1 = last[1][name]
        assert rss1 <= rss0 * (1 + MAX_RSS_GROWTH), f"{name} RSS grew {rss0} -> {rss1} KiB"
        assert fd1 <= fd0 + 5, f"{name} open fds grew {fd0} -> {fd1}"
    # Pools open connections on demand up to DATABASE_POOL_MAX and close idle ones after 60 s, so the
    # count moves with bursts; a leak is a count past what the two pools can hold.
    assert max(f[2] for f in footprints) <= 2 * POOL_MAX, [f[2] for f in footprints]
