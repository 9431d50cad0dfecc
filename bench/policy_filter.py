"""What the tool policy's name filter costs a search, and whether top-k stays full.

    uv run python bench/policy_filter.py [--tools 10000] [--queries 200]

10,000 synthetic tools (clustered vectors, bench/_catalogue.py) spread over 100 upstreams named
``svc00`` … ``svc99``; ``Registry.search`` (query embedding cached, SQL, fusion; no HTTP) runs the
same queries with no policy, with 10 % and 1 % of the upstreams visible, and with five named tools
visible. The filter is ``name LIKE ANY(...)`` inside each index scan (tool_registry.search).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import msgspec
from _catalogue import WORDS, fresh_database, postgres, registry, synthetic_tools

from platform_common.auth import Principal
from tool_registry.models import SearchRequest, ToolImport
from tool_registry.policy import Access, Policy, Rule, access_for

UPSTREAMS = 100


def view(*globs: str) -> Access:
    return access_for(Policy(rules=[Rule(see=list(globs))]), Principal("bench", frozenset()))


VIEWS = {
    "no policy": view("*"),
    "10% visible (10 upstreams)": view("svc0?.*"),
    "1% visible (1 upstream)": view("svc07.*"),
    "5 named tools": view(*(f"svc{i:02d}.tool_{i:06d}" for i in range(5))),
}


async def main(tools: int, queries: int) -> None:
    rng = random.Random(3)
    requests = [" ".join(rng.sample(WORDS, 5)) for _ in range(queries)]
    catalogue = synthetic_tools(tools)
    for i, item in enumerate(catalogue):
        item["name"] = f"svc{i % UPSTREAMS:02d}.tool_{i:06d}"
    with postgres() as server:
        url = await fresh_database(server)
        async with registry(url) as service:
            await service.import_tools(msgspec.convert(catalogue, list[ToolImport]), "bench")
            await service.indexer.catch_up()  # every vector was given: this marks the model ready
            async with service.primary.connection() as conn:
                await conn.execute("ANALYZE")  # as autovacuum would: planned as empty, nothing uses HNSW
            for text in requests:  # embed every query once: the timings compare SQL, not the model
                await service.search(SearchRequest(query=text), VIEWS["no policy"])
            print(f"{tools} tools, {queries} queries, limit 10 (p50 / p95 ms; searches returning a full page)")
            for mode in ("hybrid", "text"):
                for label, access in VIEWS.items():
                    page = min(10, sum(access.sees(item["name"]) for item in catalogue))
                    took, full = [], 0
                    for text in requests:
                        started = time.perf_counter()
                        found = await service.search(SearchRequest(query=text, mode=mode), access)
                        took.append((time.perf_counter() - started) * 1000)
                        full += len(found.results) == page
                    took.sort()
                    p95 = took[int(0.95 * len(took))]
                    print(f"{mode:6} {label:28} {statistics.median(took):6.2f} / {p95:6.2f}   {full}/{len(took)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.tools, args.queries))
