"""What the platform-wide rate limit costs per request, and how exact it is across processes.

    uv run python bench/ratelimit.py [--seconds 3] [--offered 1000]

Cost: one process offers ``--offered`` requests per second (paced in 10 ms ticks, each request its
own task, as concurrent HTTP requests are) to a ``SharedRateLimiter`` on a real PostgreSQL, and
the same load to a limiter that admits everything; the difference in this process's CPU time, per
request, is the limiter's cost. PostgreSQL's own CPU (all server processes) and its transactions
are reported per request too. Scenarios, all at RATE_LIMIT_PER_MINUTE=100 unless named:

- hot keys: 10 callers sharing the load (most requests refused from memory once they are spent);
- many keys: every request from a new client IP (every request needs a lease: the worst case);
- high limit: 10 callers at 60,000/min (most requests admitted from leases of 1,200 tokens).

Accuracy: 6 processes, each with its own pool and limiter as 6 uvicorn workers would have, offer
one client's requests together for twice ``--seconds``; the admitted count is compared with what a
single token bucket admits (its 100-token burst plus the refill).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
from _catalogue import postgres

from platform_common.db import Database, migrate
from platform_common.embedded_postgres import EmbeddedPostgres
from platform_common.ratelimit import RateLimited
from platform_common.sharedlimit import SharedRateLimiter

TABLE = "tot_rate_limits"
PROCESSES = 6
LIMIT = 100


class AdmitAll:
    """The baseline: the same tasks and bookkeeping, no limiting."""

    async def enforce(self, key: str) -> None:
        return None


async def _one(limiter: SharedRateLimiter | AdmitAll, key: str) -> bool:
    try:
        await limiter.enforce(key)
    except RateLimited:
        return False
    return True


async def offer(
    limiter: SharedRateLimiter | AdmitAll, key_of: Callable[[int], str], rate: float, seconds: float
) -> tuple[int, int, float]:
    """Offer ``rate`` requests/s for ``seconds``; returns (offered, admitted, CPU seconds of this process)."""
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    tasks: list[asyncio.Task[bool]] = []
    started, cpu = time.perf_counter(), time.process_time()
    ticks = 0
    while time.perf_counter() - started < seconds:
        tasks.extend(asyncio.create_task(_one(limiter, key_of(len(tasks)))) for _ in range(per_tick))
        ticks += 1
        await asyncio.sleep(max(0.0, started + ticks * tick - time.perf_counter()))
    admitted = sum(await asyncio.gather(*tasks))
    return len(tasks), admitted, time.process_time() - cpu


def server_cpu(server: EmbeddedPostgres) -> float:
    """CPU seconds used so far by the PostgreSQL server: the postmaster and every backend."""
    postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == postmaster or int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def transactions(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        return count
    finally:
        await conn.close()


async def cost(
    server: EmbeddedPostgres, url: str, name: str, per_minute: int, key_of: Callable[[int], str], args: Any
) -> dict[str, Any]:
    """One scenario: the limiter's CPU per request over the admit-all baseline, and the database's."""
    _, _, base_cpu = await offer(AdmitAll(), key_of, args.offered, args.seconds)
    database = Database(url, max_size=4)
    limiter = SharedRateLimiter(per_minute, database, TABLE)
    xacts, pg_cpu = await transactions(url), server_cpu(server)
    offered, admitted, cpu = await offer(limiter, key_of, args.offered, args.seconds)
    pg_used = server_cpu(server) - pg_cpu  # before closing: an exited backend's CPU leaves /proc
    await database.close()  # a closing backend flushes its statistics
    await asyncio.sleep(0.2)
    queries = await transactions(url) - xacts - 2  # less this function's own two reads
    return {
        "scenario": name,
        "offered req/s": args.offered,
        "requests": offered,
        "admitted": admitted,
        "limiter CPU ms/req": round(max(0.0, cpu - base_cpu) * 1e3 / offered, 4),
        "PostgreSQL CPU ms/req": round(pg_used * 1e3 / offered, 4),
        "queries/req": round(queries / offered, 4),
    }


def _accuracy_worker(url: str, start_at: float, rate: float, seconds: float) -> int:
    """One "worker process": its own pool and limiter, offering one client's requests."""

    async def run() -> int:
        database = Database(url, max_size=2)
        limiter = SharedRateLimiter(LIMIT, database, TABLE)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        _, admitted, _ = await offer(limiter, lambda _: "ip:192.0.2.99", rate, seconds)
        await database.close()
        return admitted

    return asyncio.run(run())


def accuracy(url: str, args: Any) -> dict[str, Any]:
    seconds = args.seconds * 2
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(PROCESSES, mp_context=spawn) as pool:
        start_at = time.time() + 3.0  # every process imported and waiting
        futures = [
            pool.submit(_accuracy_worker, url, start_at, args.offered / PROCESSES, seconds) for _ in range(PROCESSES)
        ]
        admitted = sum(future.result() for future in futures)
    ideal = LIMIT + LIMIT / 60 * seconds
    return {
        "scenario": f"one client, {PROCESSES} processes, {seconds:.0f} s",
        "offered req/s": args.offered,
        "admitted": admitted,
        "one bucket admits": round(ideal, 1),
        "error": f"{(admitted - ideal) / ideal * 100:+.1f}%",
    }


async def measure(server: EmbeddedPostgres, args: Any) -> list[dict[str, Any]]:
    url = server.url
    await migrate(url, "tree_of_thoughts.migrations", table="tot_migrations")
    rows = [
        await cost(server, url, "hot keys (10)", LIMIT, lambda n: f"sub:agent-{n % 10}", args),
        await cost(server, url, "many keys (new IP each)", LIMIT, lambda n: f"ip:{n}", args),
        await cost(server, url, "high limit 60,000/min (10)", 60_000, lambda n: f"sub:busy-{n % 10}", args),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Duration of each cost measurement.")
    parser.add_argument("--offered", type=float, default=1000.0, help="Requests per second offered.")
    parser.add_argument("--json", type=Path, help="also write the results here (bench/report.py contract)")
    args = parser.parse_args()
    with postgres() as server:
        rows = asyncio.run(measure(server, args))
        rows.append(accuracy(server.url, args))
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    for row in rows:
        print("  ".join(f"{key}: {value}" for key, value in row.items()))
    if args.json:
        report = {"bench": "ratelimit", "description": "shared rate limit: cost and accuracy", "rows": rows}
        args.json.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
