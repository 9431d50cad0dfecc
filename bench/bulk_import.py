"""Bulk import throughput through ``POST /api/v1/tools/import`` on a running registry process.

    uv run python bench/bulk_import.py [--tools 10000]

With precomputed embeddings (chunks of 1,000 tools, ~8 MB each: the HNSW index is maintained
on insert) and without (one request of 10,000 tools; embedding happens later, in the background).
Target: ≥ 2,000 tools/s with precomputed embeddings.
"""

from __future__ import annotations

import argparse
import asyncio
import copy

import httpx
from _catalogue import free_port, fresh_database, import_chunks, postgres, registry_process, synthetic_tools


async def run(url: str, tools: list[dict[str, object]], chunk: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        return await import_chunks(http, tools, chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=10_000)
    args = parser.parse_args()
    tools = synthetic_tools(args.tools)
    bare = copy.deepcopy(tools)
    for item in bare:
        item.pop("embedding")
    with postgres() as server:
        for label, items, chunk in (
            ("with precomputed embeddings", tools, 1000),
            ("without embeddings, one request", bare, len(bare)),
        ):
            url_db = asyncio.run(fresh_database(server))
            with registry_process(url_db, free_port()) as url:
                rate = asyncio.run(run(url, items, chunk))
                print(f"{args.tools} tools {label}: {rate:,.0f} tools/s")


if __name__ == "__main__":
    main()
