"""Search throughput, latency and CPU per search through REST and MCP at 1k, 10k and 100k synthetic tools,
with cached and with unique (uncached) queries, loaded by ``wrk``.

    uv run python bench/search_latency.py [--sizes 1000,10000,100000] [--seconds 10] [--warmup 3]

The registry runs as its own process (one worker); the catalogue is bulk imported with precomputed,
clustered vectors (bench/_catalogue.py), then ``VACUUM ANALYZE`` and a ``CHECKPOINT`` so that neither
autovacuum nor the checkpointer runs during the measurements. The load generator is ``wrk`` (C, one
thread; ``make bench-packages`` installs it): it costs a fraction of the CPU a Python client would take
from the two processes it measures. Its Lua script (a temporary file) POSTs hybrid searches (limit 10, a
category filter on every fourth):

- cached: rotating over 200 fixed queries; before the first cached run every one of them is sent
  once (and its answer checked), so every measured request hits the query-embedding cache;
- uncached: a unique query per request (four random words and a counter, from a per-run start), so
  every request pays the model.

REST = ``POST /api/v1/search``; MCP = ``tools/call find_tools`` JSON-RPC POSTs on ``/mcp`` (stateless
server, protocol 2025-06-18), i.e. what any client sends per call after connecting. Each measured
run follows a ``--warmup`` run of the same script (PostgreSQL's buffers, the model, the connections),
at concurrency 1 and 16. wrk's ``done()`` prints its latency percentiles and counts as JSON; any
non-2xx answer or socket error fails the bench.

CPU per search from ``/proc/<pid>/stat`` deltas over the measured run, divided by the searches wrk
completed (meaningful on a loaded machine, where latency is not): the app = the registry's process
tree (parent and workers: utime+stime+cutime+cstime); PostgreSQL = the postmaster's utime+stime+
cutime+cstime (backends that exited are reaped into cutime) plus its live children's utime+stime
(backends, writer, WAL writer, autovacuum). Targets (issue 12, 10k tools, cached): c=16 ≥ 1,200 req/s,
p50 ≤ 15 ms, p99 ≤ 40 ms; c=1 p50 ≤ 1.5 ms; app ≤ 0.5 and PostgreSQL ≤ 0.7 CPU ms per search;
uncached c=16 ≥ 150 searches/s; p50(100k) ≤ 1.5 x p50(1k) at c=16, p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _catalogue import WORDS, free_port, fresh_database, import_chunks, postgres, registry_process, synthetic_tools

from platform_common.embedded_postgres import EmbeddedPostgres

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
PATHS = {"REST": "/api/v1/search", "MCP": "/mcp"}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# wrk's Lua side. request() builds each request; done() prints the run's numbers as one JSON line.
LUA = r"""
local interface, mode, seed = "%(interface)s", "%(mode)s", %(seed)d
local fixed = %(bodies)s
local words = %(words)s
local headers = %(headers)s
local path = "%(path)s"
local requests, counter = {}, 0

local function envelope(arguments)
  if interface == "MCP" then
    return '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"find_tools","arguments":'
      .. arguments .. '}}'
  end
  return arguments
end

init = function(args)
  math.randomseed(seed)
  for i, body in ipairs(fixed) do
    requests[i] = wrk.format("POST", path, headers, envelope(body))
  end
end

request = function()
  counter = counter + 1
  if mode == "cached" then
    return requests[(counter - 1) %% #requests + 1]
  end
  local query = {}
  for i = 1, 4 do query[i] = words[math.random(#words)] end
  local arguments = '{"query":"' .. table.concat(query, " ") .. " " .. (seed * 1000000 + counter)
    .. '","limit":10'
  if counter %% 4 == 0 then
    arguments = arguments .. string.format(',"category":"cat%%02d"', math.random(0, 15))
  end
  return wrk.format("POST", path, headers, envelope(arguments .. "}"))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"p50_us":%%.0f,"p99_us":%%.0f,"mean_us":%%.1f,'
      .. '"max_us":%%.0f,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def fixed_queries(count: int = 200) -> list[dict[str, Any]]:
    """The cached set: ``count`` distinct searches, a category filter on every fourth."""
    rng = random.Random(1)
    out = []
    for i in range(count):
        body: dict[str, Any] = {"query": " ".join(rng.sample(WORDS, 5)), "limit": 10}
        if i % 4 == 0:
            body["category"] = f"cat{rng.randrange(16):02d}"
        out.append(body)
    return out


def _lua(value: Any) -> str:
    """A Lua literal for a list of strings or a dict of strings (long brackets: no escaping needed)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in value.items()) + "}"
    return "{" + ", ".join(_lua_string(v) for v in value) + "}"


def _lua_string(text: str) -> str:
    assert "]==]" not in text
    return f"[==[{text}]==]"


def wrk(url: str, interface: str, mode: str, concurrency: int, seconds: int, seed: int) -> dict[str, Any]:
    """One wrk run; its done() numbers. Raises on any non-2xx answer or socket error."""
    headers = {"Content-Type": "application/json"}
    if interface == "MCP":
        headers |= MCP_HEADERS
    script = LUA % {
        "interface": interface,
        "mode": mode,
        "seed": seed,
        "bodies": _lua([json.dumps(b, separators=(",", ":")) for b in fixed_queries()]),
        "words": _lua(sorted(set(WORDS))),
        "headers": _lua(headers),
        "path": PATHS[interface],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", "-s", file.name, url]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        Path(file.name).unlink()
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    stats: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    errors = {k: stats[k] for k in ("connect", "read", "write", "status", "timeout") if stats[k]}
    if errors or not stats["requests"]:
        raise RuntimeError(f"wrk {interface} {mode} c={concurrency}: errors {errors} (status = non-2xx/3xx)\n{line}")
    return stats


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    return children


def tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    children, out, stack = _children(), [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack += children.get(pid, [])
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root``'s process tree: every live member's utime+stime+cutime+cstime (a
    process that exited was reaped into its parent's cutime/cstime, so the sum only grows)."""
    total = 0
    for pid in tree(root):
        try:
            fields = _stat(pid)
        except OSError:  # exited since the listing: its time moved to the parent's cutime
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / CLOCK_TICK


def tree_memory(root: int) -> tuple[float, float]:
    """RSS and PSS (MiB) summed over ``root``'s process tree (PSS shares pages between the processes)."""
    rss = pss = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


def postmaster(server: EmbeddedPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


def measure_run(
    url: str, app_pid: int, pg_pid: int, interface: str, mode: str, concurrency: int, seconds: int, warmup: int
) -> dict[str, Any]:
    """A warm-up run then the measured run of the same script; throughput, latency and CPU per search."""
    seed = random.randrange(1, 10**6)
    if warmup > 0:
        wrk(url, interface, mode, concurrency, warmup, seed + 1)  # another seed: unique queries stay unique
    app_before, pg_before = tree_cpu(app_pid), tree_cpu(pg_pid)
    stats = wrk(url, interface, mode, concurrency, seconds, seed)
    app_used, pg_used = tree_cpu(app_pid) - app_before, tree_cpu(pg_pid) - pg_before
    searches = stats["requests"]
    return {
        "req/s": round(searches / (stats["duration_us"] / 1e6)),
        "p50": round(stats["p50_us"] / 1000, 2),
        "p99": round(stats["p99_us"] / 1000, 2),
        "app CPU ms/search": round(app_used / searches * 1000, 3),
        "PostgreSQL CPU ms/search": round(pg_used / searches * 1000, 3),
    }


async def check_and_cache(url: str, interface: str) -> None:
    """Every cached query once, answers checked (MCP errors come back as 200): fills the embedding cache."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for body in fixed_queries():
            if interface == "REST":
                response = await http.post(PATHS["REST"], json=body)
                response.raise_for_status()
                continue
            call = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "find_tools", "arguments": body},
            }
            response = await http.post(PATHS["MCP"], json=call, headers=MCP_HEADERS)
            response.raise_for_status()
            if "error" in response.json() or response.json()["result"].get("isError"):
                raise RuntimeError(response.text[:300])


async def load_catalogue(url: str, database_url: str, size: int) -> float:
    """Import ``size`` tools; returns seconds taken. Then fresh statistics and a checkpoint, so neither
    autovacuum nor the checkpointer competes with the measurements."""
    tools = synthetic_tools(size)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=1200) as http:
        await import_chunks(http, tools)
    elapsed = time.perf_counter() - started
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return elapsed


ROWS = [
    (interface, mode, concurrency)
    for interface in ("REST", "MCP")
    for mode in ("cached", "uncached")
    for concurrency in (1, 16)
]


def wrk_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The options every wrk bench shares (row length, warm-up, --json); parses, and stops without wrk."""
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per row")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of the same load before each row")
    parser.add_argument("--json", type=Path, help="also write the rows here (bench/report.py reads them)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run make bench-packages")
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = wrk_arguments(parser)
    rows: list[dict[str, object]] = []
    bench_started = time.monotonic()
    with postgres() as server:
        for size in (int(s) for s in args.sizes.split(",")):
            database_url = asyncio.run(fresh_database(server))
            pids: list[int] = []
            with registry_process(database_url, free_port(), pids) as url:
                seconds = asyncio.run(load_catalogue(url, database_url, size))
                print(f"{size:>7} tools: import {seconds:.1f} s ({size / seconds:,.0f} tools/s)", flush=True)
                for interface, mode, concurrency in ROWS:
                    if mode == "cached" and concurrency == 1:
                        asyncio.run(check_and_cache(url, interface))
                    numbers = measure_run(
                        url, pids[0], postmaster(server), interface, mode, concurrency, args.seconds, args.warmup
                    )
                    row = {"tools": size, "interface": interface, "queries": mode, "concurrency": concurrency}
                    rows.append(row | numbers)
                    print(
                        f"    {interface:4s} {mode:8s} c={concurrency:<2d} {numbers['req/s']:6d} req/s  "
                        f"p50 {numbers['p50']:7.2f} ms  p99 {numbers['p99']:7.2f} ms  CPU ms/search: "
                        f"app {numbers['app CPU ms/search']:.3f}  PostgreSQL {numbers['PostgreSQL CPU ms/search']:.3f}",
                        flush=True,
                    )
    print(f"total {time.monotonic() - bench_started:.0f} s")
    if args.json:
        description = (
            "Searches through REST and MCP loaded by wrk (one thread), one registry worker: cached = 200 "
            "fixed queries (embedding cache hits), uncached = a unique query per request; p50/p99 in ms; "
            "CPU ms per search of the registry's process tree and of PostgreSQL's, from /proc"
        )
        args.json.write_text(json.dumps({"bench": "search_latency", "description": description, "rows": rows}))


if __name__ == "__main__":
    main()
