"""SIGTERM under load, the way Kubernetes delivers it: drop from endpoints, preStop sleep, SIGTERM.

What uvicorn really does on SIGTERM (0.54, checked in ``uvicorn/server.py``): it closes the
listening socket at once (new connections are refused), asks every open connection to close after
its current response, waits up to ``timeout_graceful_shutdown`` (20 s, set by the runner) for the
in-flight requests, and only then runs the lifespan shutdown. It never turns ``/ready`` false by
itself: the chart's preStop ``sleep`` is what gives the endpoints controller time to stop routing
to the pod. The test emulates that: clients keep sending during a short preStop window, stop, then
the process gets SIGTERM while long requests are still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar

from platform_common.http import create_app
from platform_common.mcp import McpApp, McpTool, ToolContext
from tests.reliability.harness import (
    AppProcess,
    Sample,
    dedicated_postgres,
    mcp_tool_call,
    registry_process,
    timed,
    tot_process,
)
from tests.servers import running_server
from tests.tot.llm_double import ChatRequest, ScriptedLLM

PRESTOP_SECONDS = 1.5
CLIENT_TIMEOUT = 30.0


def thinking(request: ChatRequest) -> str:
    """A generic-task LLM that keeps having ideas: only a budget, a cancel or a shutdown ends the run."""
    if "Judge whether" in request.prompt:
        return "likely"
    return f"consider idea {time.monotonic_ns()}"


@contextlib.contextmanager
def slow_llm(delay: float) -> Iterator[ScriptedLLM]:
    with ScriptedLLM(thinking, delay=delay) as llm:
        yield llm


class WaitArgs(msgspec.Struct, forbid_unknown_fields=True):
    seconds: float


class Waited(msgspec.Struct):
    seconds: float


async def wait(args: WaitArgs, _: ToolContext) -> Waited:
    await asyncio.sleep(args.seconds)
    return Waited(args.seconds)


def slow_upstream() -> Litestar:
    """An upstream MCP server whose one tool answers after the seconds it is asked to wait."""
    tool = McpTool(name="wait", description="Wait, then answer.", arguments=WaitArgs, result=Waited, handler=wait)
    mcp = McpApp(name="slow-upstream", version="1.0.0", instructions="a slow upstream", tools=[tool])  # type: ignore[list-item]
    return create_app(route_handlers=[mcp.route()], lifespan=[mcp.lifespan])


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


async def _drive(
    app: AppProcess,
    short: Callable[[httpx.AsyncClient, int], Awaitable[Sample]],
    long: Callable[[httpx.AsyncClient], Awaitable[Sample]],
) -> dict[str, object]:
    """Load, preStop window, SIGTERM with long requests in flight; returns what was measured."""
    samples: list[Sample] = []
    ready: list[Sample] = []
    sending = asyncio.Event()
    sending.set()
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=httpx.Limits(max_connections=64)) as client:

        async def loop() -> None:
            for i in itertools.count():
                if not sending.is_set():
                    return
                samples.append(await short(client, i))
                await asyncio.sleep(0.01)

        async def probe() -> None:
            while sending.is_set():
                ready.append(await timed(client, "ready", "GET", f"{app.url}/ready", timeout=3))
                await asyncio.sleep(0.2)

        loops = [asyncio.create_task(loop()) for _ in range(6)]
        prober = asyncio.create_task(probe())
        await asyncio.sleep(2)
        # The pod is deleted: the endpoints controller drops it while preStop sleeps; traffic tails off.
        longs = [asyncio.create_task(long(client)) for _ in range(3)]
        await asyncio.sleep(PRESTOP_SECONDS)
        sending.clear()
        stopped_sending_at = time.monotonic()
        # By the end of preStop the short requests already sent have been answered (the pod left the
        # endpoints seconds ago); only the long ones are still in flight. A request written after
        # SIGTERM on a keep-alive connection is what the preStop sleep exists to prevent.
        await asyncio.gather(*loops, prober)
        sigterm_at = time.monotonic()
        app.signal(signal.SIGTERM)
        refused_after = None
        while time.monotonic() - sigterm_at < 5:
            if refused(app.port):
                refused_after = time.monotonic() - sigterm_at
                break
            await asyncio.sleep(0.02)
        long_samples = await asyncio.gather(*longs)
    assert app.process is not None
    exit_code = await asyncio.to_thread(app.process.wait, 30)
    exited_after = time.monotonic() - sigterm_at
    before = [s for s in samples if s.sent < stopped_sending_at]
    return {
        "samples": before,
        "long": long_samples,
        "ready": [s for s in ready if s.sent < stopped_sending_at],
        "sigterm_at": sigterm_at,
        "refused_after": refused_after,
        "exit_code": exit_code,
        "exited_after": exited_after,
        "in_flight_at_sigterm": sum(1 for s in long_samples if s.done > sigterm_at),
    }


def _check(app: str, result: dict[str, object]) -> None:
    samples = result["samples"]
    longs = result["long"]
    assert isinstance(samples, list) and isinstance(longs, list)
    print(
        f"\n{app}: {len(samples)} requests before SIGTERM, {result['in_flight_at_sigterm']} long ones in flight, "
        f"connections refused {result['refused_after']:.2f} s after SIGTERM, exit {result['exit_code']} "
        f"after {result['exited_after']:.2f} s"
    )
    errors = [(s.name, s.status, s.error) for s in samples + longs if not s.ok]
    errors += [(s.name, s.body) for s in longs if s.ok and s.name.startswith("mcp") and s.body["result"].get("isError")]
    assert not errors, errors[:5]
    assert result["in_flight_at_sigterm"] == len(longs), "the long requests should still be running at SIGTERM"
    ready = result["ready"]
    assert isinstance(ready, list)
    # Readiness never answered "not ready" before SIGTERM. A probe may time out while the event loop
    # is busy on 2 cores: tolerated once, like the chart's failureThreshold 2, never twice in a row.
    assert not [s for s in ready if s.status is not None and s.status != 200]
    stalls = [(s.error, round(s.done - s.sent, 2)) for s in ready if not s.ok]
    if stalls:
        print(f"{app}: readiness probes that timed out: {stalls}")
    assert not any(not a.ok and not b.ok for a, b in itertools.pairwise(ready)), stalls
    assert result["refused_after"] is not None, "the listening socket stayed open after SIGTERM"
    assert result["exit_code"] == 0


@pytest.mark.slow
async def test_registry_sigterm_under_load_drops_nothing() -> None:
    # The long requests are tool calls the registry proxies to an upstream that takes 4 s: a fixed
    # duration past the preStop window, however fast the registry itself gets.
    with dedicated_postgres() as pg, running_server(slow_upstream()) as upstream:
        app = registry_process(pg.url).start()
        try:
            async with httpx.AsyncClient(base_url=app.url, timeout=CLIENT_TIMEOUT) as http:
                server = {"name": "slow", "url": f"{upstream}/mcp", "auto_approve": True}
                assert (await http.post("/api/v1/servers", json=server)).status_code == 201
                assert (await http.post("/api/v1/servers/slow/sync")).status_code == 200

            def short(client: httpx.AsyncClient, i: int) -> Awaitable[Sample]:
                if i % 2:
                    return timed(client, "search", "POST", f"{app.url}/api/v1/search", json={"query": "weather"})
                return timed(client, "list", "GET", f"{app.url}/api/v1/tools", params={"limit": 3})

            def long(client: httpx.AsyncClient) -> Awaitable[Sample]:
                arguments = {"name": "slow.wait", "arguments": {"seconds": 4}}
                return mcp_tool_call(client, app.url, "call_tool", arguments)

            result = await _drive(app, short, long)
        finally:
            app.stop()
    _check("registry", result)


@pytest.mark.slow
async def test_tot_sigterm_under_load_finishes_in_flight_solves() -> None:
    with dedicated_postgres() as pg, slow_llm(0.4) as llm:
        app = tot_process(
            pg.url, LLM_BASE_URL=llm.base_url, MAX_ACTIVE_RUNS_PER_OWNER="100", MAX_THOUGHTS_DEPTH="50"
        ).start()
        try:

            def short(client: httpx.AsyncClient, i: int) -> Awaitable[Sample]:
                if i % 2:
                    return timed(client, "tasks", "GET", f"{app.url}/api/v1/tasks")
                return timed(client, "runs", "GET", f"{app.url}/api/v1/runs", params={"limit": 3})

            def long(client: httpx.AsyncClient) -> Awaitable[Sample]:
                # about 8 LLM rounds of 0.4 s: still searching when SIGTERM arrives 1.5 s later
                arguments = {
                    "task": "generic",
                    "problem": "Plan a trip.",
                    "breadth": 1,
                    "max_depth": 8,
                    "evaluator": "value",
                }
                return mcp_tool_call(client, app.url, "solve", arguments)

            result = await _drive(app, short, long)
        finally:
            app.stop()
    _check("tot", result)
    for sample in result["long"]:  # type: ignore[union-attr]
        structured = sample.body["result"]["structuredContent"]
        assert structured["status"] == "succeeded", structured


@pytest.mark.slow
async def test_tot_runs_of_a_stopped_replica_read_correctly_on_another() -> None:
    """Graceful stop marks unfinished runs failed/worker_lost; a killed replica's runs read so once stale."""
    with dedicated_postgres() as pg, slow_llm(0.3) as llm:
        extra = {"LLM_BASE_URL": llm.base_url, "MAX_ACTIVE_RUNS_PER_OWNER": "100", "MAX_THOUGHTS_DEPTH": "50"}
        other = tot_process(pg.url, **extra).start()
        try:
            async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
                body = {
                    "task": "generic",
                    "problem": "Plan a trip.",
                    "breadth": 1,
                    "max_depth": 50,
                    "max_llm_calls": 10_000 // 100,
                }
                outcomes = {}
                for how in (signal.SIGTERM, signal.SIGKILL):
                    doomed = tot_process(pg.url, **extra).start()
                    started = (await client.post(f"{doomed.url}/api/v1/runs", json=body)).json()
                    run_url = f"{other.url}/api/v1/runs/{started['id']}"
                    deadline = time.monotonic() + 10
                    while (await client.get(run_url)).json()["status"] != "running":
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.1)
                    doomed.signal(how)
                    assert doomed.process is not None
                    await asyncio.to_thread(doomed.process.wait, 30)
                    if how == signal.SIGKILL:
                        run = (await client.get(run_url)).json()
                        # No one recorded an end; the heartbeat is fresh, so it still reads running ...
                        assert run["status"] == "running"
                        # ... until it is older than LOST_AFTER (60 s): age it instead of waiting.
                        conn = await asyncpg.connect(pg.url)
                        try:
                            await conn.execute(
                                "UPDATE tot_runs SET heartbeat_at = heartbeat_at - interval '61 seconds' WHERE id = $1",
                                started["id"],
                            )
                        finally:
                            await conn.close()
                    outcomes[how.name] = (await client.get(run_url)).json()
        finally:
            other.stop()
    for name, run in outcomes.items():
        assert (run["status"], run["stop_reason"]) == ("failed", "worker_lost"), (name, run)
        assert run["error"]
    print(f"\nSIGTERM: {outcomes['SIGTERM']['error']}\nSIGKILL: {outcomes['SIGKILL']['error']}")
