"""The search engine: strategies, budgets and stop reasons, cancellation, concurrency, LLM-driven runs."""

from __future__ import annotations

import ast
import asyncio
import csv
import itertools
import operator
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from fractions import Fraction
from pathlib import Path

import msgspec
import pytest

from tests.tot.llm_double import ChatRequest, Reply, ScriptedLLM
from tree_of_thoughts.engine import LLMRequiredError, SearchParams, SearchResult, run_search
from tree_of_thoughts.llm import LLMClient, LLMError
from tree_of_thoughts.tasks import Game24State, get_task

GAME24 = get_task("game24")
GENERIC = get_task("generic")
DATASET = Path(__file__).resolve().parents[2] / "datasets" / "game24" / "24.csv"
EXHAUSTIVE = SearchParams(strategy="dfs", breadth=50, value_threshold=0.0, evaluator="heuristic")

_OPS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](evaluate(node.left), evaluate(node.right))
    raise AssertionError(f"unexpected element {ast.dump(node)}")


def assert_valid_24(answer: str | None, puzzle: str) -> None:
    """Parse the reported answer independently of the engine and check it with Fractions."""
    assert answer is not None
    expression, equals, right = answer.partition("=")
    assert equals and right.strip() == "24"
    tree = ast.parse(expression.strip(), mode="eval").body
    numbers = sorted(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, int))
    assert numbers == sorted(int(n) for n in puzzle.split())
    assert evaluate(tree) == 24


def assert_consistent_tree(result: SearchResult) -> None:
    ids = [n.id for n in result.nodes]
    assert ids == list(range(len(ids)))
    assert result.nodes[0].parent is None
    for node in result.nodes[1:]:
        assert node.parent is not None and node.depth == result.nodes[node.parent].depth + 1
    best_path = [n for n in result.nodes if n.on_best_path]
    assert best_path[-1].id == result.best_node_id
    assert [n.depth for n in best_path] == list(range(len(best_path)))


# --- game24 without an LLM ------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        SearchParams(strategy="bfs", breadth=5, evaluator="heuristic"),
        SearchParams(strategy="bfs", breadth=5),  # hybrid without LLM: heuristic only
        SearchParams(strategy="dfs", evaluator="heuristic"),
        SearchParams(strategy="best_first", breadth=1, evaluator="heuristic"),
        EXHAUSTIVE,
    ],
    ids=["bfs", "bfs-hybrid", "dfs", "best_first", "exhaustive"],
)
async def test_each_strategy_solves_game24_without_llm(params: SearchParams) -> None:
    result = await run_search(GAME24, "4 9 10 13", params, llm=None)
    assert result.solved and result.stop_reason == "solved"
    assert_valid_24(result.answer, "4 9 10 13")
    assert_consistent_tree(result)
    best = result.nodes[result.best_node_id]
    assert best.terminal and best.score == 1.0 and best.depth == 3
    assert result.stats.llm_calls == 0 and result.stats.rounds >= 3


async def test_exhaustive_search_solves_ranks_901_to_1000_with_valid_answers() -> None:
    with DATASET.open(newline="") as handle:
        puzzles = [row["Puzzles"] for row in csv.DictReader(handle) if 901 <= int(row["Rank"]) <= 1000]
    assert len(puzzles) == 100
    for puzzle in puzzles:
        result = await run_search(GAME24, puzzle, EXHAUSTIVE, llm=None)
        assert result.solved, puzzle
        assert_valid_24(result.answer, puzzle)


async def test_wider_beam_solves_more() -> None:
    with DATASET.open(newline="") as handle:
        puzzles = [row["Puzzles"] for row in csv.DictReader(handle) if 901 <= int(row["Rank"]) <= 950]
    solved = {}
    for breadth in (1, 5):
        params = SearchParams(breadth=breadth, evaluator="heuristic")
        solved[breadth] = sum([(await run_search(GAME24, p, params, llm=None)).solved for p in puzzles])
    assert solved[1] < solved[5]


async def test_unsolvable_puzzle_is_exhausted() -> None:
    for strategy in ("bfs", "dfs", "best_first"):
        params = SearchParams(strategy=strategy, breadth=50, value_threshold=0.0)
        result = await run_search(GAME24, "1 1 1 1", params, llm=None)
        assert not result.solved and result.answer is None
        assert result.stop_reason == "exhausted", strategy
        assert_consistent_tree(result)


async def test_duplicate_states_are_expanded_once() -> None:
    result = await run_search(GAME24, "2 2 2 2", EXHAUSTIVE, llm=None)
    assert result.stats.duplicates_skipped > 0
    keys = [tuple(sorted(n.state.split())) for n in result.nodes]
    assert len(keys) == len(set(keys))  # "2 2 4" is reached from many pairs but appears once


async def test_dfs_prunes_below_threshold() -> None:
    result = await run_search(GAME24, "1 1 1 1", SearchParams(strategy="dfs", value_threshold=0.3), llm=None)
    depth1 = [n for n in result.nodes if n.depth == 1]
    assert all(n.pruned for n in depth1 if n.score is not None and n.score < 0.3)
    assert result.stats.nodes_expanded == 1


async def test_bfs_keeps_breadth_best_per_level() -> None:
    result = await run_search(GAME24, "1 1 1 1", SearchParams(breadth=2, evaluator="heuristic"), llm=None)
    level1 = [n for n in result.nodes if n.depth == 1]
    kept = [n for n in level1 if not n.pruned]
    assert len(kept) == 2
    assert min(n.score or 0 for n in kept) >= max(n.score or 0 for n in level1 if n.pruned)


async def test_sample_generator_without_llm_draws_from_rules() -> None:
    params = SearchParams(generator="sample", n_generate=3, breadth=50, evaluator="heuristic")
    result = await run_search(GAME24, "1 1 4 6", params, llm=None)
    assert len([n for n in result.nodes if n.depth == 1]) <= 3


# --- stop reasons and budgets -----------------------------------------------------------


async def test_stop_max_depth() -> None:
    for strategy in ("bfs", "dfs", "best_first"):
        params = SearchParams(strategy=strategy, max_depth=2, value_threshold=0.0)
        result = await run_search(GAME24, "4 9 10 13", params, llm=None)
        assert result.stop_reason == "max_depth", strategy
        assert max(n.depth for n in result.nodes) == 2


async def test_stop_max_nodes() -> None:
    result = await run_search(GAME24, "4 9 10 13", SearchParams(max_nodes=10), llm=None)
    assert result.stop_reason == "max_nodes"
    assert len(result.nodes) == 10 and result.stats.nodes_generated == 9


async def test_progress_reports_rounds_and_ends_at_one() -> None:
    reports: list[tuple[float, str]] = []

    async def on_progress(progress: float, message: str) -> None:
        reports.append((progress, message))

    result = await run_search(GAME24, "4 9 10 13", SearchParams(), llm=None, on_progress=on_progress)
    assert len(reports) == result.stats.rounds + 1
    values = [p for p, _ in reports]
    assert values == sorted(values) and all(0 <= p <= 1 for p in values)
    assert reports[-1] == (1.0, "done: solved")


async def test_cooperative_cancel_keeps_partial_tree() -> None:
    rounds = 0

    async def on_progress(progress: float, message: str) -> None:
        nonlocal rounds
        rounds += 1

    result = await run_search(
        GAME24, "1 1 1 1", EXHAUSTIVE, llm=None, on_progress=on_progress, should_stop=lambda: rounds >= 2
    )
    assert result.stop_reason == "cancelled"
    assert result.stats.rounds == 2 and len(result.nodes) > 1


# --- with a scripted LLM ----------------------------------------------------------------


class GenericScript:
    """Scripted model for the generic task: numbered steps, scores by depth, a fixed answer."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> str | Reply:
        prompt = request.prompt
        if "write the final answer" in prompt:
            return "Final answer: 42"
        if "Judge whether" in prompt:
            # Deeper partial solutions look better, so the best node is the deepest one.
            return "sure" if "Step 2:" in prompt else "likely"
        with self._lock:
            return f"idea {next(self._counter)}"


@pytest.fixture
def generic_llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(GenericScript()) as server:
        yield server


@pytest.fixture
async def client(generic_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    async with LLMClient(generic_llm.base_url, model="test", max_concurrency=64, backoff_base=0.01) as llm:
        yield llm


async def test_generic_task_with_scripted_llm(client: LLMClient, generic_llm: ScriptedLLM) -> None:
    params = SearchParams(breadth=2, max_depth=2, n_generate=2, n_evaluate=3)
    result = await run_search(GENERIC, "What is six times seven?", params, llm=client)
    assert result.answer == "42" and not result.solved
    # The best answer is a leaf at max depth (never expanded).
    assert result.stop_reason == "max_depth"
    best = result.nodes[result.best_node_id]
    assert best.depth == 2 and best.score == 1.0
    assert not any(n.parent == best.id for n in result.nodes)
    assert_consistent_tree(result)
    # Round 1: 2 samples + 2 values; round 2: 4 samples + 4 values; then the answer call.
    assert result.stats.llm_calls == generic_llm.requests == 13
    assert result.stats.rounds == 2
    value_request = next(r for r in generic_llm.received if "Judge whether" in r.prompt)
    assert value_request.n == 3


async def test_generic_requires_llm() -> None:
    with pytest.raises(LLMRequiredError, match="task 'generic' needs an LLM"):
        await run_search(GENERIC, "anything", SearchParams(), llm=None)


@pytest.mark.parametrize("evaluator", ["value", "vote"])
async def test_llm_evaluators_require_llm(evaluator: str) -> None:
    params = SearchParams(evaluator=evaluator)  # type: ignore[arg-type]
    with pytest.raises(LLMRequiredError, match=f"evaluator '{evaluator}' needs an LLM"):
        await run_search(GAME24, "4 9 10 13", params, llm=None)


async def test_bad_problem_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="exactly four integers"):
        await run_search(GAME24, "1 2 3", SearchParams(), llm=None)


async def test_token_accounting() -> None:
    with ScriptedLLM(lambda _r: Reply(texts=["likely"], prompt_tokens=11, completion_tokens=3)) as server:
        async with LLMClient(server.base_url, model="t") as llm:
            params = SearchParams(breadth=1, max_depth=1, n_generate=2)
            result = await run_search(GENERIC, "q", params, llm=llm)
    calls = result.stats.llm_calls
    assert calls == server.requests == 4  # one sample twice (deduplicated), one value call, one answer
    assert result.stats.prompt_tokens == 11 * calls and result.stats.completion_tokens == 3 * calls
    assert result.stats.duplicates_skipped == 1


async def test_stop_max_llm_calls_keeps_one_call_for_the_answer(client: LLMClient) -> None:
    result = await run_search(GENERIC, "q", SearchParams(max_llm_calls=5, breadth=3, n_generate=3), llm=client)
    assert result.stop_reason == "max_llm_calls"
    assert result.stats.llm_calls == 5 and result.answer == "42"


async def test_stop_max_tokens(client: LLMClient) -> None:
    result = await run_search(GENERIC, "q", SearchParams(max_tokens=100), llm=client)
    assert result.stop_reason == "max_tokens"
    assert result.answer == "42"


async def test_stop_timeout_keeps_partial_tree() -> None:
    with ScriptedLLM(GenericScript(), delay=0.2) as server:
        async with LLMClient(server.base_url, model="t") as llm:
            started = time.monotonic()
            result = await run_search(GENERIC, "q", SearchParams(timeout_seconds=0.5), llm=llm)
            elapsed = time.monotonic() - started
    assert result.stop_reason == "timeout" and result.answer is None
    assert elapsed < 0.8
    assert len(result.nodes) > 1


async def test_task_cancel_stops_promptly_and_cancels_llm_calls() -> None:
    with ScriptedLLM(GenericScript(), delay=3.0) as server:
        async with LLMClient(server.base_url, model="t") as llm:
            run = asyncio.create_task(run_search(GENERIC, "q", SearchParams(), llm=llm))
            while server.in_flight < 5:  # the first round's five samples
                await asyncio.sleep(0.01)
            started = time.monotonic()
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            assert time.monotonic() - started < 0.5
            assert server.requests == 5  # abandoned, and nothing new was sent


async def test_cooperative_cancel_with_llm_skips_answer_call(client: LLMClient, generic_llm: ScriptedLLM) -> None:
    result = await run_search(GENERIC, "q", SearchParams(), llm=client, should_stop=lambda: True)
    assert result.stop_reason == "cancelled" and result.answer is None
    assert generic_llm.requests == 0 and result.nodes[0].state == "(no steps yet)"


async def test_bfs_wall_time_follows_rounds_not_calls() -> None:
    delay = 0.1
    with ScriptedLLM(GenericScript(), delay=delay) as server:
        async with LLMClient(server.base_url, model="t", max_concurrency=32) as llm:
            params = SearchParams(breadth=3, n_generate=3, max_depth=2, concurrency=32)
            started = time.monotonic()
            result = await run_search(GENERIC, "q", params, llm=llm)
            elapsed = time.monotonic() - started
    # Each round is one wave of generation and one of evaluation, then one answer call.
    waves = 2 * result.stats.rounds + 1
    assert result.stats.llm_calls == 25 and server.max_concurrent >= 9
    assert elapsed < waves * delay * 1.25 + 0.1
    assert elapsed < result.stats.llm_calls * delay / 3


async def test_concurrency_param_bounds_parallel_calls() -> None:
    with ScriptedLLM(GenericScript(), delay=0.02) as server:
        async with LLMClient(server.base_url, model="t", max_concurrency=32) as llm:
            await run_search(GENERIC, "q", SearchParams(max_depth=1, concurrency=2), llm=llm)
    assert server.max_concurrent == 2


async def test_retries_inside_a_run_and_client_errors_surface(generic_llm: ScriptedLLM, client: LLMClient) -> None:
    generic_llm.fail(2, 429)
    result = await run_search(GENERIC, "q", SearchParams(max_depth=1, n_generate=1), llm=client)
    assert result.answer == "42" and generic_llm.requests == 3 + 2
    generic_llm.fail(1, 400)
    with pytest.raises(LLMError, match="HTTP 400"):
        await run_search(GENERIC, "q", SearchParams(max_depth=1, n_generate=1), llm=client)


def game24_script(request: ChatRequest) -> str:
    """A model that knows one path for 4 9 10 13 and judges only '4 4 10' promising."""
    prompt = request.prompt
    if "best choice" in prompt:
        return "Choice 1 looks best. The best choice is 1"
    if "Numbers:" in prompt:
        return "likely" if "Numbers: 4 4 10" in prompt else "impossible"
    proposals = {
        "Input: 4 9 10 13": "13 - 9 = 4 (left: 4 4 10)\n4 + 9 = 13 (left: 10 13 13)",
        "Input: 4 4 10": "10 - 4 = 6 (left: 4 6)\n4 * 4 = 16 (left: 10 16)",
        "Input: 4 6": "4 * 6 = 24 (left: 24)",
    }
    return next((text for key, text in proposals.items() if key in prompt), "")


@pytest.mark.parametrize("evaluator", ["value", "hybrid", "vote"])
async def test_game24_with_llm_proposals_and_evaluators(evaluator: str) -> None:
    with ScriptedLLM(game24_script) as server:
        async with LLMClient(server.base_url, model="t") as llm:
            params = SearchParams(breadth=1, evaluator=evaluator)  # type: ignore[arg-type]
            result = await run_search(GAME24, "4 9 10 13", params, llm=llm)
    assert result.solved and result.answer == "(13 - 9) * (10 - 4) = 24"
    assert_valid_24(result.answer, "4 9 10 13")
    level1 = {n.state: n.score for n in result.nodes if n.depth == 1}
    if evaluator == "value":
        assert level1 == {"4 4 10": 0.5, "10 13 13": 0.0}
    elif evaluator == "hybrid":
        heuristic = GAME24.heuristic(Game24State(numbers=(Fraction(4), Fraction(4), Fraction(10)), exprs=("",) * 3))
        assert heuristic is not None
        assert level1["4 4 10"] == pytest.approx(0.5 * 0.5 + 0.5 * heuristic)
    else:
        assert level1 == {"4 4 10": 1.0, "10 13 13": 0.0}


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("breadth", 0, "breadth must be between 1 and 50"),
        ("breadth", 51, "breadth must be between 1 and 50"),
        ("max_depth", 0, "max_depth must be between 1 and 50"),
        ("strategy", "random", "strategy must be one of: bfs, dfs, best_first"),
        ("evaluator", "magic", "evaluator must be one of: value, vote, heuristic, hybrid"),
        ("generator", "guess", "generator must be one of: propose, sample"),
        ("value_threshold", 1.5, "value_threshold must be between 0 and 1"),
        ("timeout_seconds", 0, "timeout_seconds must be greater than 0"),
        ("concurrency", 0, "concurrency must be between 1 and 256"),
        ("max_llm_calls", 0, "max_llm_calls must be between 1 and 100000"),
        ("hybrid_weight", -0.1, "hybrid_weight must be between 0 and 1"),
    ],
)
def test_parameter_validation(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchParams(**{field: value})  # type: ignore[arg-type]


def test_parameters_decode_from_json_with_validation() -> None:
    params = msgspec.json.decode(b'{"strategy": "dfs", "breadth": 3}', type=SearchParams)
    assert params.strategy == "dfs" and params.breadth == 3 and params.max_depth == 5
    with pytest.raises(msgspec.ValidationError, match="breadth must be between 1 and 50"):
        msgspec.json.decode(b'{"breadth": 99}', type=SearchParams)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"bredth": 3}', type=SearchParams)


async def test_result_serialises() -> None:
    result = await run_search(GAME24, "1 1 4 6", SearchParams(), llm=None)
    decoded = msgspec.json.decode(msgspec.json.encode(result), type=SearchResult)
    assert decoded.answer == result.answer and len(decoded.nodes) == len(result.nodes)
