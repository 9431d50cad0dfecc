"""The mutable state of one search: the tree, the budgets, and the expand/evaluate round.

Strategies only decide *which* nodes to expand; everything a round does (generate
children concurrently, drop duplicates, apply the exact checker, score children
concurrently, charge budgets) lives here so every strategy behaves the same way.
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tree_of_thoughts.engine.errors import LLMRequiredError
from tree_of_thoughts.engine.params import SearchParams
from tree_of_thoughts.engine.result import SearchStats, StopReason
from tree_of_thoughts.llm import ChatMessage, LLMClient
from tree_of_thoughts.tasks import GeneratorName, Step, Task

S = TypeVar("S")
T = TypeVar("T")

ProgressCallback = Callable[[float, str], Awaitable[None]]

# Completion lengths per kind of call: enough for a short rationale plus the verdict.
_MAX_TOKENS = {"propose": 400, "sample": 200, "value": 200, "vote": 400, "answer": 600}
_GENERATE_TEMPERATURE = 0.7
_EVALUATE_TEMPERATURE = 0.7
_ANSWER_TEMPERATURE = 0.0


class BudgetExhausted(Exception):
    """Raised inside one unit of work when the run has already decided to stop."""


@dataclass(slots=True)
class TreeNode(Generic[S]):
    id: int
    parent: int | None
    depth: int
    state: S
    thought: str
    score: float | None = None
    pruned: bool = False
    terminal: bool = False
    solution: bool = False
    dead_end: bool = False

    @property
    def expandable(self) -> bool:
        return not (self.terminal or self.dead_end)

    @property
    def rank(self) -> float:
        """Sort key for "best first"; unscored nodes (budget ran out mid-round) rank last."""
        return -1.0 if self.score is None else self.score


async def gather_all(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on any failure (or our own cancellation) cancel the rest, then re-raise."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class SearchRun(Generic[S]):
    """One run of one task on one problem."""

    def __init__(
        self,
        task: Task[S],
        problem: str,
        initial: S,
        params: SearchParams,
        *,
        llm: LLMClient | None,
        generator: GeneratorName,
        reserved_llm_calls: int,
        on_progress: ProgressCallback | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.task = task
        self.problem = problem
        self.params = params
        self.llm = llm
        self.generator = generator
        self.stats = SearchStats()
        self.nodes: list[TreeNode[S]] = []
        self.stop_reason: StopReason | None = None
        self.solution: TreeNode[S] | None = None
        self.started = time.monotonic()
        self._llm_call_limit = params.max_llm_calls - reserved_llm_calls
        self._seen: set[Hashable] = set()
        self._max_depth_reached = 0
        self._semaphore = asyncio.Semaphore(params.concurrency)
        self._on_progress = on_progress
        self._should_stop = should_stop
        # Rule-based sampling must be reproducible for the same problem.
        self._rng = random.Random(zlib.crc32(problem.encode()))
        self.root = self._add(None, Step(thought="", state=initial))

    # --- stopping -----------------------------------------------------------
    def stop(self, reason: StopReason) -> None:
        """Record why the run ends; the first reason wins, except that a solution always does."""
        if self.stop_reason is None or (reason == "solved" and self.stop_reason != "solved"):
            self.stop_reason = reason

    def halted(self) -> bool:
        """Checked between rounds: has the run stopped, or has its owner asked it to?"""
        if self.stop_reason is None and self._should_stop is not None and self._should_stop():
            self.stop("cancelled")
        return self.stop_reason is not None

    async def end_round(self) -> None:
        self.stats.rounds += 1
        depth_progress = self._max_depth_reached / self.params.max_depth
        node_progress = len(self.nodes) / self.params.max_nodes
        await self.report(
            min(1.0, max(depth_progress, node_progress)),
            f"round {self.stats.rounds}: depth {self._max_depth_reached}/{self.params.max_depth}, "
            f"{len(self.nodes)} nodes, {self.stats.llm_calls} LLM calls",
        )

    async def report(self, progress: float, message: str) -> None:
        if self._on_progress is not None:
            await self._on_progress(progress, message)

    # --- the tree -----------------------------------------------------------
    def _add(self, parent: TreeNode[S] | None, step: Step[S]) -> TreeNode[S]:
        depth = 0 if parent is None else parent.depth + 1
        node = TreeNode(
            id=len(self.nodes),
            parent=None if parent is None else parent.id,
            depth=depth,
            state=step.state,
            thought=step.thought,
        )
        node.terminal = self.task.is_terminal(step.state)
        node.solution = self.task.is_solution(step.state)
        node.dead_end = not node.solution and self.task.is_dead_end(step.state)
        # The exact checker settles these states; no evaluator is asked.
        if node.solution:
            node.score = 1.0
            self.solution = self.solution or node
            self.stop("solved")
        elif node.dead_end:
            node.score = 0.0
            node.pruned = True
        self.nodes.append(node)
        self._seen.add(self.task.state_key(step.state))
        self._max_depth_reached = max(self._max_depth_reached, depth)
        return node

    def _attach(self, parent: TreeNode[S], steps: list[Step[S]]) -> list[TreeNode[S]]:
        """Add new children, skipping states already in the tree and respecting max_nodes."""
        children: list[TreeNode[S]] = []
        for step in steps:
            if self.task.state_key(step.state) in self._seen:
                self.stats.duplicates_skipped += 1
                continue
            if len(self.nodes) >= self.params.max_nodes:
                self.stop("max_nodes")
                break
            children.append(self._add(parent, step))
        return children

    # --- one round ----------------------------------------------------------
    async def expand(self, parents: Sequence[TreeNode[S]]) -> list[TreeNode[S]]:
        """Generate children of all parents concurrently, then evaluate them all concurrently."""
        generated = await gather_all([self._guard(self._generate(p)) for p in parents])
        children: list[TreeNode[S]] = []
        for parent, steps in zip(parents, generated, strict=True):
            if steps is None:
                continue
            self.stats.nodes_expanded += 1
            children.extend(self._attach(parent, steps))
        await self._evaluate(children)
        return children

    async def _guard(self, work: Awaitable[T]) -> T | None:
        """A unit of work cut short by a budget yields None; the round keeps what others produced."""
        try:
            return await work
        except BudgetExhausted:
            return None

    async def _generate(self, node: TreeNode[S]) -> list[Step[S]]:
        if self.llm is None:
            return self._rule_steps(node.state)
        if self.generator == "propose":
            prompt = self.task.propose_prompt(self.problem, node.state, self.params.n_generate)
            texts = await self.call_llm(prompt, kind="propose", temperature=_GENERATE_TEMPERATURE)
            return self.task.parse_proposals(node.state, texts[0] if texts else "")[: self.params.n_generate]
        prompt = self.task.sample_prompt(self.problem, node.state)
        samples = await gather_all(
            [
                self._guard(self.call_llm(prompt, kind="sample", temperature=_GENERATE_TEMPERATURE))
                for _ in range(self.params.n_generate)
            ]
        )
        if all(texts is None for texts in samples):
            raise BudgetExhausted
        steps = [self.task.parse_sample(node.state, texts[0]) for texts in samples if texts]
        return [step for step in steps if step is not None]

    def _rule_steps(self, state: S) -> list[Step[S]]:
        steps = self.task.rule_proposals(state) or []
        if self.generator == "sample" and steps:
            # i.i.d. draws, as independent LLM samples would be; repeats are deduplicated later.
            return [self._rng.choice(steps) for _ in range(self.params.n_generate)]
        return steps

    async def _evaluate(self, children: list[TreeNode[S]]) -> None:
        pending = [c for c in children if c.score is None]
        if self.params.evaluator == "vote":
            await self._guard(self._vote(pending))
        else:
            await gather_all([self._guard(self._score(c)) for c in pending])
        self.stats.nodes_evaluated += sum(1 for c in children if c.score is not None)

    async def _score(self, node: TreeNode[S]) -> None:
        evaluator = self.params.evaluator
        heuristic = self.task.heuristic(node.state) if evaluator in ("heuristic", "hybrid") else None
        if evaluator == "heuristic" or (evaluator == "hybrid" and self.llm is None):
            node.score = heuristic
            return
        value = await self._value(node)
        if heuristic is None:
            node.score = value
        else:
            weight = self.params.hybrid_weight
            node.score = weight * value + (1 - weight) * heuristic

    async def _value(self, node: TreeNode[S]) -> float:
        """Mean of n sampled judgements; unreadable ones are ignored, none readable counts as 0."""
        prompt = self.task.value_prompt(self.problem, node.state)
        texts = await self.call_llm(prompt, kind="value", n=self.params.n_evaluate, temperature=_EVALUATE_TEMPERATURE)
        values = [v for v in (self.task.parse_value(t) for t in texts) if v is not None]
        return sum(values) / len(values) if values else 0.0

    async def _vote(self, nodes: list[TreeNode[S]]) -> None:
        """Score = share of n vote samples that picked the node; a lone candidate wins outright."""
        if len(nodes) <= 1:
            for node in nodes:
                node.score = 1.0
            return
        prompt = self.task.vote_prompt(self.problem, [n.state for n in nodes])
        texts = await self.call_llm(prompt, kind="vote", n=self.params.n_evaluate, temperature=_EVALUATE_TEMPERATURE)
        votes = [0] * len(nodes)
        for text in texts:
            choice = self.task.parse_vote(text, len(nodes))
            if choice is not None:
                votes[choice] += 1
        for node, count in zip(nodes, votes, strict=True):
            node.score = count / max(1, len(texts))

    # --- LLM calls and budgets ----------------------------------------------
    async def call_llm(
        self, prompt: str, *, kind: str, temperature: float, n: int = 1, reserved: bool = False
    ) -> list[str]:
        """One budgeted LLM call; `reserved` is the final-answer call whose budget was set aside."""
        if self.llm is None:
            raise LLMRequiredError("this search step needs an LLM and none is configured")
        if not reserved:
            self._charge_call()
        self.stats.llm_calls += 1
        async with self._semaphore:
            completion = await self.llm.complete(
                [ChatMessage(role="user", content=prompt)],
                n=n,
                temperature=temperature,
                max_tokens=_MAX_TOKENS[kind],
            )
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        if self._tokens_used() >= self.params.max_tokens:
            self.stop("max_tokens")
        return completion.texts

    def _charge_call(self) -> None:
        """Refuse a call once the run is stopping or a budget is spent (checked before sending)."""
        if self.stop_reason is not None:
            raise BudgetExhausted
        if self.stats.llm_calls >= self._llm_call_limit:
            self.stop("max_llm_calls")
            raise BudgetExhausted
        if self._tokens_used() >= self.params.max_tokens:
            self.stop("max_tokens")
            raise BudgetExhausted

    def _tokens_used(self) -> int:
        return self.stats.prompt_tokens + self.stats.completion_tokens

    async def answer_call(self, prompt: str) -> str:
        texts = await self.call_llm(prompt, kind="answer", temperature=_ANSWER_TEMPERATURE, reserved=True)
        return self.task.extract_answer(texts[0]) if texts else ""

    # --- the end ------------------------------------------------------------
    def best_node(self) -> TreeNode[S]:
        """The verified solution if any, else the best-scored node (deeper wins ties: more progress)."""
        if self.solution is not None:
            return self.solution
        scored = [n for n in self.nodes if n.score is not None]
        if not scored:
            return self.root
        return max(scored, key=lambda n: (n.rank, n.depth, -n.id))

    def path_to(self, node: TreeNode[S]) -> list[TreeNode[S]]:
        path = [node]
        while path[-1].parent is not None:
            path.append(self.nodes[path[-1].parent])
        return path[::-1]
