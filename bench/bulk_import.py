"""Bulk import throughput through ``POST /api/v1/tools/import`` on a running registry process.

    uv run python bench/bulk_import.py [--tools 10000] [--chunk 1000] [--json PATH]

Synthetic tools (bench/_catalogue.py) into an empty catalogue, each mode on a fresh database and a fresh
``tool-registry serve`` process (one worker): with precomputed embeddings in requests of ``--chunk``
tools (~4.3 MB of JSON per 1,000: 10,000 with vectors do not fit the default 16 MB request limit, so a
client sends chunks; from the third chunk on each import inserts into the model's HNSW graph, the first
two at least double it and rebuild it), with precomputed embeddings in one request (an initial load:
one rebuild; ``MAX_REQUEST_BYTES`` raised for it), and without embeddings in one request (vectors
computed afterwards, in the background: ``embeddings_pending``). The request bodies are encoded before
the clock starts, as a client streaming a prepared file would send them: the figure is the server's
rate, not the load generator's ``json.dumps`` (~0.9 s per 10,000 tools with vectors, same CPUs).
Target: ≥ 2,000 tools/s with precomputed embeddings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from _catalogue import free_port, fresh_database, postgres, registry_process, synthetic_tools


async def timed_import(url: str, bodies: list[bytes], tools: int) -> float:
    """POST each body in turn; returns tools per second over all of them."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        for body in bodies:
            response = await http.post(
                "/api/v1/tools/import", content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()
        return tools / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=1000, help="tools per request with precomputed embeddings")
    parser.add_argument("--json", type=Path, help="also write the rows here (bench/report.py reads them)")
    args = parser.parse_args()
    tools = synthetic_tools(args.tools)
    bare = [{key: value for key, value in item.items() if key != "embedding"} for item in tools]
    chunks = -(-args.tools // args.chunk)
    modes: list[tuple[str, list[dict[str, Any]], int]] = [
        (f"precomputed embeddings, {chunks} chunks of {args.chunk:,}", tools, args.chunk),
        # An initial load in one request (the CLI's `import FILE` is one transaction too): past the
        # default 16 MB limit, so this process gets MAX_REQUEST_BYTES raised to fit.
        ("precomputed embeddings, one request", tools, len(tools)),
        ("without embeddings, one request", bare, len(bare)),
    ]
    rows = []
    with postgres() as server:
        for mode, items, chunk in modes:
            bodies = [json.dumps(items[start : start + chunk]).encode() for start in range(0, len(items), chunk)]
            url_db = asyncio.run(fresh_database(server))
            os.environ["MAX_REQUEST_BYTES"] = str(max(16 * 1024 * 1024, max(len(body) for body in bodies) + 1024))
            with registry_process(url_db, free_port()) as url:
                rate = asyncio.run(timed_import(url, bodies, len(items)))
            print(f"{args.tools} tools, {mode}: {rate:,.0f} tools/s", flush=True)
            rows.append({"mode": mode, "tools": args.tools, "tools/s": round(rate)})
    if args.json:
        description = "Tools imported per second through POST /api/v1/tools/import into an empty catalogue"
        args.json.write_text(json.dumps({"bench": "bulk_import", "description": description, "rows": rows}))


if __name__ == "__main__":
    main()
