"""Search parameters: one frozen Struct, validated on construction and on decoding."""

from __future__ import annotations

from typing import Literal

import msgspec

from tree_of_thoughts.tasks import GeneratorName

Strategy = Literal["bfs", "dfs", "best_first"]
EvaluatorName = Literal["value", "vote", "heuristic", "hybrid"]

_STRATEGIES = ("bfs", "dfs", "best_first")
_GENERATORS = ("propose", "sample")
_EVALUATORS = ("value", "vote", "heuristic", "hybrid")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    # bool is an int subclass; True must not pass for a count.
    if isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of: {', '.join(choices)}")


class SearchParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to search. `generator=None` means the task's default.

    Rule-based `propose` returns every legal step; LLM `propose` asks for up to
    `n_generate` steps in one call; `sample` makes `n_generate` independent calls.
    In `best_first`, `breadth` is how many top frontier nodes are expanded per round.
    In `dfs`, `breadth` caps the children explored per node and `value_threshold`
    prunes children scoring below it.

    Budgets are checked before each LLM call, so calls already in flight may overshoot
    max_tokens; when the task's answer is written by the LLM, one of max_llm_calls is
    kept for that final call.
    """

    strategy: Strategy = "bfs"
    breadth: int = 5
    max_depth: int = 5
    generator: GeneratorName | None = None
    evaluator: EvaluatorName = "hybrid"
    n_generate: int = 5
    n_evaluate: int = 3
    value_threshold: float = 0.3
    max_nodes: int = 10_000
    max_llm_calls: int = 200
    max_tokens: int = 200_000
    timeout_seconds: float = 300.0
    concurrency: int = 8
    hybrid_weight: float = 0.5

    def __post_init__(self) -> None:
        _check_choice("strategy", self.strategy, _STRATEGIES)
        if self.generator is not None:
            _check_choice("generator", self.generator, _GENERATORS)
        _check_choice("evaluator", self.evaluator, _EVALUATORS)
        _check_range("breadth", self.breadth, 1, 50)
        _check_range("max_depth", self.max_depth, 1, 50)
        _check_range("n_generate", self.n_generate, 1, 20)
        _check_range("n_evaluate", self.n_evaluate, 1, 20)
        _check_range("value_threshold", self.value_threshold, 0.0, 1.0)
        _check_range("max_nodes", self.max_nodes, 1, 1_000_000)
        _check_range("max_llm_calls", self.max_llm_calls, 1, 100_000)
        _check_range("max_tokens", self.max_tokens, 1, 100_000_000)
        if not 0 < self.timeout_seconds <= 86_400:
            raise ValueError("timeout_seconds must be greater than 0 and at most 86400")
        _check_range("concurrency", self.concurrency, 1, 256)
        _check_range("hybrid_weight", self.hybrid_weight, 0.0, 1.0)
