"""`run_search`: the engine's single entry point."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tree_of_thoughts.engine.errors import LLMRequiredError
from tree_of_thoughts.engine.params import SearchParams
from tree_of_thoughts.engine.result import Node, SearchResult
from tree_of_thoughts.engine.strategies import STRATEGIES
from tree_of_thoughts.engine.tree import SearchRun
from tree_of_thoughts.llm import LLMClient
from tree_of_thoughts.tasks import Task

S = TypeVar("S")

# Runs ending for these reasons must not spend more time or calls on a final answer.
_NO_ANSWER_CALL = ("timeout", "cancelled")


async def run_search(
    task: Task[Any],
    problem: str,
    params: SearchParams,
    *,
    llm: LLMClient | None,
    on_progress: Callable[[float, str], Awaitable[None]] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Search for an answer to `problem` and return the whole tree.

    Raises ValueError for a bad problem, LLMRequiredError when the task, generator or
    evaluator needs an LLM and `llm` is None, and LLMError when the LLM keeps failing.
    Cancelling the calling task cancels in-flight LLM calls and propagates
    CancelledError; `should_stop` returning True ends the run after the current round
    with stop_reason "cancelled" and the partial tree. With evaluator "hybrid" and no
    LLM, scores come from the task heuristic alone.
    """
    initial = check_run(task, problem, params, llm_available=llm is not None)
    wants_answer_call = llm is not None and task.answer_prompt(problem, initial) is not None
    run: SearchRun[Any] = SearchRun(
        task,
        problem,
        initial,
        params,
        llm=llm,
        generator=params.generator or task.default_generator,
        reserved_llm_calls=1 if wants_answer_call else 0,
        on_progress=on_progress,
        should_stop=should_stop,
    )
    deadline = time.monotonic() + params.timeout_seconds
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            await STRATEGIES[params.strategy](run)
    except TimeoutError:
        run.stop("timeout")
    answer = await _final_answer(run, deadline)
    run.stats.elapsed_seconds = round(time.monotonic() - run.started, 6)
    await run.report(1.0, f"done: {run.stop_reason}")
    return _result(run, answer)


def check_run(task: Task[S], problem: str, params: SearchParams, *, llm_available: bool) -> S:
    """Refuse a run that cannot work, before any search: returns the parsed initial state.

    Raises ValueError for a bad problem or a task/evaluator mismatch, and LLMRequiredError when
    the run needs an LLM and none is available. Callers use it to reject requests up front.
    """
    initial = task.parse_problem(problem)
    if task.heuristic(initial) is None and params.evaluator == "heuristic":
        raise ValueError(f"task {task.name!r} has no heuristic; use evaluator 'value', 'vote' or 'hybrid'")
    if llm_available:
        return initial
    hint = "configure an LLM (LLM_BASE_URL, LLM_MODEL)"
    if task.requires_llm or task.rule_proposals(initial) is None:
        raise LLMRequiredError(f"task {task.name!r} needs an LLM: {hint}")
    if params.evaluator in ("value", "vote"):
        raise LLMRequiredError(f"evaluator {params.evaluator!r} needs an LLM: {hint}, or use 'heuristic' or 'hybrid'")
    return initial


def _loop_time(deadline: float) -> float:
    """Translate a time.monotonic() deadline to the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


async def _final_answer(run: SearchRun[S], deadline: float) -> str | None:
    """The best state's own answer, else one reserved LLM call that writes it (if time is left)."""
    best = run.best_node()
    answer = run.task.direct_answer(run.problem, best.state)
    if answer is not None or run.llm is None or run.stop_reason in _NO_ANSWER_CALL:
        return answer
    prompt = run.task.answer_prompt(run.problem, best.state)
    if prompt is None or time.monotonic() >= deadline:
        return None
    try:
        async with asyncio.timeout_at(_loop_time(deadline)):
            return await run.answer_call(prompt)
    except TimeoutError:
        return None


def _result(run: SearchRun[S], answer: str | None) -> SearchResult:
    best = run.best_node()
    on_path = {node.id for node in run.path_to(best)}
    run.stats.nodes_generated = len(run.nodes) - 1
    nodes = [
        Node(
            id=n.id,
            parent=n.parent,
            depth=n.depth,
            state=run.task.render_state(n.state),
            thought=n.thought,
            score=n.score,
            pruned=n.pruned,
            terminal=n.terminal,
            on_best_path=n.id in on_path,
        )
        for n in run.nodes
    ]
    assert run.stop_reason is not None
    return SearchResult(
        answer=answer,
        solved=run.solution is not None,
        stop_reason=run.stop_reason,
        best_node_id=best.id,
        stats=run.stats,
        nodes=nodes,
    )
