"""Query embedding throughput and CPU: unique (uncached) queries at concurrency 1 and 16.

    uv run python bench/query_embedding.py [--queries 800]

In process, through ``LocalEmbedder.embed`` (the path a search's cache miss takes): concurrent callers
share model runs (batch thread, ≤ 2 ms wait). The baseline is what the registry did before, one
``encode`` per query in a worker thread. CPU per query is this process's utime+stime delta
(/proc/self/stat) divided by the queries, so it is meaningful on a busy machine where latency is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _catalogue import WORDS

from tool_registry.embeddings import LOCAL_QUERY_PREFIX, LocalEmbedder, Vectors


def cpu_seconds() -> float:
    """User + system CPU of this process so far (all threads)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def unique_queries(count: int) -> list[str]:
    rng = random.Random(7)
    return [f"{LOCAL_QUERY_PREFIX}{' '.join(rng.sample(WORDS, rng.randrange(3, 12)))} #{i}" for i in range(count)]


async def run(embed: Callable[[str], Awaitable[Vectors]], queries: list[str], concurrency: int) -> tuple[float, float]:
    """Queries per second and CPU milliseconds per query."""
    items = iter(queries)

    async def worker() -> None:
        for query in items:
            await embed(query)

    cpu, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, used = time.perf_counter() - started, cpu_seconds() - cpu
    return len(queries) / elapsed, used / len(queries) * 1000


async def measure(count: int) -> list[dict[str, object]]:
    embedder = LocalEmbedder()
    embedder.encode(["warm up"])

    async def batched(query: str) -> Vectors:
        return await embedder.embed([query])

    async def one_run_each(query: str) -> Vectors:
        return await asyncio.to_thread(embedder.encode, [query])

    rows: list[dict[str, object]] = []
    for label, embed in (("one run per query (before)", one_run_each), ("batched", batched)):
        for concurrency in (1, 16):
            queries = unique_queries(count)  # the same texts for every configuration
            runs_before = embedder.batches
            rate, cpu_ms = await run(embed, queries, concurrency)
            runs = embedder.batches - runs_before if embed is batched else len(queries)
            row = {
                "path": label,
                "concurrency": concurrency,
                "queries/s": round(rate),
                "CPU ms/query": round(cpu_ms, 2),
                "texts/run": round(len(queries) / runs, 1),
            }
            rows.append(row)
            print(
                f"{label:27s} c={concurrency:<2d} {rate:6.0f} queries/s  {cpu_ms:5.2f} CPU ms/query  "
                f"{row['texts/run']} texts per model run",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=800)
    parser.add_argument("--json", type=Path, help="also write the rows here (bench/report.py reads them)")
    args = parser.parse_args()
    rows = asyncio.run(measure(args.queries))
    if args.json:
        description = f"Unique query embeddings, local MiniLM ({LocalEmbedder().threads} threads), in process"
        args.json.write_text(json.dumps({"bench": "query_embedding", "description": description, "rows": rows}))


if __name__ == "__main__":
    main()
