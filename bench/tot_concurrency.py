"""Concurrency benchmark: does a bfs run's wall time follow rounds, not LLM calls?

    uv run python bench/tot_concurrency.py [--delays 0.05 0.1 0.2] [--breadth 3] [--depth 3]

Runs the generic task against the scripted OpenAI-compatible server (tests/tot/llm_double.py)
with a fixed per-request latency L. A bfs round is two sequential waves of calls
(generate, then evaluate), and the final answer is one more, so the ideal wall time is
(2 * rounds + 1) * L however many calls each wave holds. Target: measured / ideal <= 1.25.
The server runs in its own process, so its threads do not compete with the client for the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The scripted server lives with the tests; make the repo root importable when run as a script.
sys.path.insert(0, str(REPO_ROOT))

from tests.tot.llm_double import ChatRequest, ScriptedLLM  # noqa: E402
from tree_of_thoughts.engine import SearchParams, run_search  # noqa: E402
from tree_of_thoughts.llm import ChatMessage, LLMClient  # noqa: E402
from tree_of_thoughts.tasks import get_task  # noqa: E402


class Script:
    """Distinct steps (so nothing is deduplicated), middling values, a fixed answer."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> str:
        if "write the final answer" in request.prompt:
            return "42"
        if "Judge whether" in request.prompt:
            return "likely"
        with self._lock:
            return f"step {next(self._ids)}"


def serve(delay: float, conn: Connection) -> None:
    """Child process: run the scripted server until the parent says stop (no GIL shared with the client)."""
    with ScriptedLLM(Script(), delay=delay) as server:
        conn.send(server.base_url)
        conn.recv()
        conn.send(server.max_concurrent)


async def measure(delay: float, params: SearchParams) -> dict[str, str]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=serve, args=(delay, child), daemon=True)
    process.start()
    base_url = parent.recv()
    try:
        async with LLMClient(base_url, model="bench", max_concurrency=params.concurrency) as llm:
            # Warm up: a long-running server's client has done its first request (imports, connection).
            await llm.complete([ChatMessage(role="user", content="warm-up")])
            started = time.perf_counter()
            result = await run_search(get_task("generic"), "benchmark problem", params, llm=llm)
            elapsed = time.perf_counter() - started
    finally:
        parent.send("stop")
        max_concurrent = parent.recv()
        process.join()
    ideal = (2 * result.stats.rounds + 1) * delay
    return {
        "L (s)": f"{delay:.2f}",
        "rounds": str(result.stats.rounds),
        "LLM calls": str(result.stats.llm_calls),
        "max concurrent": str(max_concurrent),
        "ideal (2r+1)L (s)": f"{ideal:.2f}",
        "wall (s)": f"{elapsed:.3f}",
        "wall / ideal": f"{elapsed / ideal:.2f}",
        "sequential calls x L (s)": f"{result.stats.llm_calls * delay:.1f}",
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--breadth", type=int, default=3)
    parser.add_argument("--n-generate", type=int, default=3)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the results here (bench/report.py contract)")
    args = parser.parse_args()
    params = SearchParams(
        strategy="bfs",
        breadth=args.breadth,
        n_generate=args.n_generate,
        max_depth=args.depth,
        concurrency=args.concurrency,
        evaluator="value",
    )
    shape = f"breadth {args.breadth}, n_generate {args.n_generate}, depth {args.depth}"
    print(f"bfs, {shape}, concurrency {args.concurrency}\n")
    rows = [await measure(delay, params) for delay in args.delays]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")
    if args.json:
        description = f"ToT bfs wall time against LLM latency ({shape}, concurrency {args.concurrency})"
        args.json.write_text(json.dumps({"bench": "tot_concurrency", "description": description, "rows": rows}))


if __name__ == "__main__":
    asyncio.run(main())
