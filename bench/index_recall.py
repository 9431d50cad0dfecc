"""Recall of the HNSW (halfvec) index against exact search at 100k tools.

    uv run python bench/index_recall.py [--tools 100000] [--queries 200]

Synthetic clustered vectors (bench/_catalogue.py), imported in process with the production import
(the index is maintained on insert, as in production). Queries are more draws from the same clusters,
not imported; every fourth filters by category. For each query: the production vector search
(``search.candidates`` + ``search.fuse``, limit 10: the index's 20 candidates re-ranked by full-precision
cosine) against the exact top 10 (full-precision cosine over every row, no index). recall@10 = the share
of the exact top 10 the search returned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import msgspec
import numpy as np
from _catalogue import fresh_database, postgres, registry, synthetic_tools

from tool_registry import catalogue, search
from tool_registry.embeddings import LOCAL_MODEL
from tool_registry.indexer import index_name
from tool_registry.models import ToolImport

EXACT = """
    SELECT t.name FROM tool_embeddings e JOIN tools t ON t.id = e.tool_id
    WHERE e.model = $2 AND t.status = 'active' AND ($3::text IS NULL OR t.category = $3)
    ORDER BY e.embedding::vector(384) <=> $1::vector(384), t.name
    LIMIT 10
"""


async def measure(url: str, tools: int, queries: int) -> dict[str, object]:
    drawn = synthetic_tools(tools + queries)
    items = msgspec.convert(drawn[:tools], list[ToolImport])
    probes = [
        (np.asarray(d["embedding"]["vector"], dtype=np.float32), d["category"] if i % 4 == 0 else None)
        for i, d in enumerate(drawn[tools:])
    ]
    async with registry(url) as service:
        started = time.perf_counter()
        async with service.primary.connection() as conn:
            for start in range(0, len(items), 2000):
                await catalogue.import_tools(
                    conn, items[start : start + 2000], actor="bench", model=LOCAL_MODEL, dimension=384
                )
        rate = len(items) / (time.perf_counter() - started)
        print(f"imported {tools:,} tools in process at {rate:,.0f} tools/s (HNSW maintained on insert)", flush=True)
        recalls: list[float] = []
        filtered: list[float] = []
        latencies: dict[bool, list[float]] = {False: [], True: []}
        async with service.replica.connection() as conn:
            size = await conn.fetchval("SELECT pg_relation_size($1::regclass)", index_name(LOCAL_MODEL, 384))
            for vector, category in probes:
                began = time.perf_counter()
                found = await search.candidates(
                    conn,
                    query="",
                    vector=vector,
                    model=LOCAL_MODEL,
                    dimension=384,
                    mode="vector",
                    filters=search.Filters(category=category),
                    limit=10,
                )
                latencies[category is not None].append(time.perf_counter() - began)
                got = {hit.name for hit in search.fuse(found, "vector", limit=10, min_score=0.0)}
                async with conn.transaction():
                    await conn.execute("SET LOCAL enable_indexscan = off")
                    exact = {row["name"] for row in await conn.fetch(EXACT, vector, LOCAL_MODEL, category)}
                (filtered if category else recalls).append(len(got & exact) / len(exact))
    row = {
        "tools": tools,
        "recall@10 unfiltered": round(statistics.fmean(recalls), 4),
        "recall@10 category filter": round(statistics.fmean(filtered), 4),
        "unfiltered statement p50 ms": round(statistics.median(latencies[False]) * 1000, 2),
        "filtered statement p50 ms": round(statistics.median(latencies[True]) * 1000, 2),
        "filtered statement max ms": round(max(latencies[True]) * 1000, 2),
        "index MB": round(size / 1e6, 1),
        "import tools/s": round(rate),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the rows here (bench/report.py reads them)")
    args = parser.parse_args()
    with postgres() as server:
        url = asyncio.run(fresh_database(server))
        row = asyncio.run(measure(url, args.tools, args.queries))
    if args.json:
        description = "Recall@10 of the halfvec HNSW index against exact search (synthetic clustered vectors)"
        args.json.write_text(json.dumps({"bench": "index_recall", "description": description, "rows": [row]}))


if __name__ == "__main__":
    main()
