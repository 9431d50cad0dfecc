"""Game of 24 benchmark: ranks 901-1000 with rule-based proposals and the heuristic evaluator.

    uv run python bench/game24.py [path/to/24.csv] [--first 901] [--last 1000]

Configurations: bfs with beam 1 and 5 (the ToT paper's b=1 / b=5), and exhaustive
depth-first search (every child explored, nothing pruned but exact dead ends). Every
reported answer is re-evaluated independently with Fraction arithmetic.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import json
import operator
import statistics
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from tree_of_thoughts.engine import SearchParams, run_search
from tree_of_thoughts.tasks import get_task

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = REPO_ROOT / "datasets" / "game24" / "24.csv"

CONFIGS = {
    "bfs b=1": SearchParams(strategy="bfs", breadth=1, evaluator="heuristic"),
    "bfs b=5": SearchParams(strategy="bfs", breadth=5, evaluator="heuristic"),
    "exhaustive (dfs, b=50, threshold 0)": SearchParams(
        strategy="dfs", breadth=50, value_threshold=0.0, evaluator="heuristic"
    ),
}

_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(node: ast.expr) -> Fraction:
    """Exact value of an arithmetic expression tree (integers and + - * / only)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](evaluate(node.left), evaluate(node.right))
    raise ValueError(f"unexpected expression element: {ast.dump(node)}")


def answer_is_valid(answer: str, puzzle: str) -> bool:
    """The left side uses exactly the puzzle's numbers and equals 24."""
    expression, _, right = answer.partition("=")
    tree = ast.parse(expression.strip(), mode="eval").body
    used = sorted(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, int))
    return right.strip() == "24" and used == sorted(map(int, puzzle.split())) and evaluate(tree) == 24


def load_puzzles(path: Path, first: int, last: int) -> list[str]:
    with path.open(newline="") as handle:
        return [row["Puzzles"] for row in csv.DictReader(handle) if first <= int(row["Rank"]) <= last]


async def run_config(name: str, params: SearchParams, puzzles: list[str]) -> dict[str, object]:
    task = get_task("game24")
    solved, invalid = 0, 0
    expanded: list[int] = []
    generated: list[int] = []
    started = time.perf_counter()
    for puzzle in puzzles:
        result = await run_search(task, puzzle, params, llm=None)
        expanded.append(result.stats.nodes_expanded)
        generated.append(result.stats.nodes_generated)
        if result.solved and result.answer is not None:
            if answer_is_valid(result.answer, puzzle):
                solved += 1
            else:
                invalid += 1
    elapsed = time.perf_counter() - started
    return {
        "config": name,
        "solved": f"{solved}/{len(puzzles)}",
        "invalid answers": invalid,
        "expanded mean": f"{statistics.mean(expanded):.1f}",
        "expanded median": f"{statistics.median(expanded):.0f}",
        "generated mean": f"{statistics.mean(generated):.1f}",
        "time total s": f"{elapsed:.2f}",
        "ms/puzzle": f"{1000 * elapsed / len(puzzles):.1f}",
    }


def print_table(rows: list[dict[str, object]]) -> None:
    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in headers) + " |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--first", type=int, default=901)
    parser.add_argument("--last", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the results here (bench/report.py contract)")
    args = parser.parse_args()
    puzzles = load_puzzles(args.csv, args.first, args.last)
    print(f"{len(puzzles)} puzzles, ranks {args.first}-{args.last}, from {args.csv}\n")
    rows = [await run_config(name, params, puzzles) for name, params in CONFIGS.items()]
    print_table(rows)
    if args.json:
        description = f"Game of 24, ranks {args.first}-{args.last}, rule-based proposals, heuristic evaluator"
        args.json.write_text(json.dumps({"bench": "game24", "description": description, "rows": rows}, default=str))


if __name__ == "__main__":
    asyncio.run(main())
