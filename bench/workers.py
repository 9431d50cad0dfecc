"""Worker processes per registry pod: cached REST searches at 10k tools with WORKERS=1, 2 and 4, loaded by
``wrk`` at concurrency 16 and 64.

    uv run python bench/workers.py [--tools 10000] [--workers 1,2,4] [--seconds 10] [--warmup 3]

One catalogue (synthetic tools with precomputed vectors, bench/_catalogue.py; ``VACUUM ANALYZE`` and a
``CHECKPOINT`` after the import) is served in turn by ``tool-registry serve`` with each WORKERS value.
Every worker keeps its own query-embedding cache: the 200 cached queries are each sent once, then
``--warmup`` x WORKERS seconds of the load at concurrency 64 (some 1,000 requests per worker, so each
worker has seen nearly every query: a worker that meets one first in the measured run would pay the
model), and before each row ``--warmup`` seconds of that row's load. The method
and the CPU columns are bench/search_latency.py's (CPU ms per search of the registry's process tree and
of PostgreSQL's, from /proc); RSS and PSS are summed over the registry's process tree after the run
(PSS splits shared pages between the processes, so it is the memory the pod really holds).
Needs ``wrk`` (make bench-packages).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from _catalogue import free_port, fresh_database, postgres, registry_process
from search_latency import (
    check_and_cache,
    load_catalogue,
    measure_run,
    postmaster,
    tree,
    tree_memory,
    wrk,
    wrk_arguments,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", default="16,64")
    args = wrk_arguments(parser)
    rows: list[dict[str, object]] = []
    started = time.monotonic()
    with postgres() as server:
        database_url = asyncio.run(fresh_database(server))
        with registry_process(database_url, free_port()) as url:
            seconds = asyncio.run(load_catalogue(url, database_url, args.tools))
        print(f"{args.tools} tools imported in {seconds:.1f} s", flush=True)
        for workers in (int(w) for w in args.workers.split(",")):
            pids: list[int] = []
            with registry_process(database_url, free_port(), pids, env={"WORKERS": str(workers)}) as url:
                asyncio.run(check_and_cache(url, "REST"))
                wrk(url, "REST", "cached", 64, args.warmup * workers, seed=1)  # every worker's cache
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    numbers = measure_run(
                        url, pids[0], postmaster(server), "REST", "cached", concurrency, args.seconds, args.warmup
                    )
                    rss, pss = tree_memory(pids[0])
                    row: dict[str, object] = {"workers": workers, "concurrency": concurrency, **numbers}
                    row |= {"processes": len(tree(pids[0])), "RSS MiB": round(rss), "PSS MiB": round(pss)}
                    rows.append(row)
                    print(
                        f"WORKERS={workers} c={concurrency:<2d} {numbers['req/s']:6d} req/s  "
                        f"p50 {numbers['p50']:7.2f} ms  p99 {numbers['p99']:7.2f} ms  "
                        f"CPU ms/search: app {numbers['app CPU ms/search']:.3f}  "
                        f"PostgreSQL {numbers['PostgreSQL CPU ms/search']:.3f}  RSS {rss:.0f} MiB  PSS {pss:.0f} MiB "
                        f"({row['processes']} processes)",
                        flush=True,
                    )
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        description = (
            f"Registry worker processes per pod: cached REST searches at {args.tools:,} tools, wrk (one thread); "
            "p50/p99 in ms; CPU ms per search of the registry's process tree and of PostgreSQL's; memory of "
            "the registry's process tree (MiB)"
        )
        args.json.write_text(json.dumps({"bench": "workers", "description": description, "rows": rows}))


if __name__ == "__main__":
    main()
