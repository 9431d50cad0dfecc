"""Search latency and throughput through REST and MCP at 1k, 10k and 100k synthetic tools.

    uv run python bench/search_latency.py [--sizes 1000,10000,100000] [--requests 2000]

The registry runs as its own process (one worker); the catalogue is bulk imported with
precomputed, clustered vectors (bench/_catalogue.py). 200 distinct requests are sent once to warm
the query-embedding cache, then ``--requests`` searches at concurrency 16 (hybrid, limit 10, a
category filter on every fourth), and REST sequentially (concurrency 1: latency without queueing).
MCP calls ``find_tools`` with plain JSON-RPC POSTs on /mcp
(stateless server, protocol 2025-06-18), i.e. what any client sends per call after connecting.
Targets: p50 ≤ 10 ms, p99 ≤ 50 ms, p50 at 100k ≤ 2x p50 at 1k.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _catalogue import WORDS, free_port, fresh_database, import_chunks, postgres, registry_process, synthetic_tools

CONCURRENCY = 16
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def queries(count: int = 200) -> list[dict[str, Any]]:
    rng = random.Random(1)
    out = []
    for i in range(count):
        body: dict[str, Any] = {"query": " ".join(rng.sample(WORDS, 5)), "limit": 10}
        if i % 4 == 0:
            body["category"] = f"cat{rng.randrange(16):02d}"
        out.append(body)
    return out


async def rest(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await http.post("/api/v1/search", json=body)
    response.raise_for_status()


async def mcp(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "find_tools", "arguments": body}}
    response = await http.post("/mcp", json=message, headers=MCP_HEADERS)
    response.raise_for_status()
    if "error" in response.json() or response.json()["result"].get("isError"):
        raise RuntimeError(response.text[:300])


async def load(
    http: httpx.AsyncClient,
    call: Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[None]],
    bodies: list[dict[str, Any]],
    total: int,
    concurrency: int,
) -> tuple[list[float], float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await call(http, bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, total / (time.perf_counter() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def measure(url: str, size: int, requests: int) -> list[dict[str, object]]:
    bodies = queries()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        rate = await import_chunks(http, synthetic_tools(size))
        for body in bodies:  # warm the query-embedding cache (and PostgreSQL's buffers)
            await rest(http, body)
        rows: list[dict[str, object]] = []
        print(f"{size:>7} tools (import {rate:,.0f} tools/s)")
        for name, call, concurrency in (("REST", rest, CONCURRENCY), ("MCP", mcp, CONCURRENCY), ("REST", rest, 1)):
            latencies, throughput = await load(http, call, bodies, requests, concurrency)
            row = {
                "tools": size,
                "interface": name,
                "concurrency": concurrency,
                "p50": round(percentile(latencies, 50), 2),
                "p99": round(percentile(latencies, 99), 2),
                "mean": round(statistics.fmean(latencies) * 1000, 2),
                "req/s": round(throughput),
            }
            rows.append(row)
            print(
                f"    {name:4s} c={concurrency:<2d} p50 {row['p50']:5.1f} ms  p99 {row['p99']:5.1f} ms  "
                f"mean {row['mean']:5.1f} ms  {throughput:6.0f} req/s",
                flush=True,
            )
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the rows here (bench/report.py reads them)")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with postgres() as server:
        for size in (int(s) for s in args.sizes.split(",")):
            database_url = asyncio.run(fresh_database(server))
            with registry_process(database_url, free_port()) as url:
                rows += asyncio.run(measure(url, size, args.requests))
    if args.json:
        description = "Search latency (ms) and throughput with cached query embeddings, one registry worker"
        args.json.write_text(json.dumps({"bench": "search_latency", "description": description, "rows": rows}))


if __name__ == "__main__":
    main()
