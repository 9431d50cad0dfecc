"""Game of 24: combine four numbers with + - * / into 24.

States hold exact rationals (fractions.Fraction), so checking a solution never suffers
from float rounding (8 / (3 - 8 / 3) is exactly 24). Every step combines two remaining
numbers, so a state with one number is terminal and the tree is three steps deep.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from tree_of_thoughts.tasks.base import GeneratorName, Step, Task

TARGET = Fraction(24)
_MAX_NUMBER = 99
# How far from 24 a two-number state may land and still look promising to the heuristic
# (1 gave the clearest beam-width effect on ranks 901-1000; see docs/benchmarks-tot.md).
_NEAR = 1


@dataclass(frozen=True, slots=True)
class Game24State:
    """Remaining numbers, each with the expression over the original numbers that built it."""

    numbers: tuple[Fraction, ...]
    exprs: tuple[str, ...]


def format_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _combinations(a: Fraction, b: Fraction) -> Iterator[tuple[Fraction, str, bool]]:
    """(result, operator, swapped) for every way to combine a and b; commutative ops once, no x/0."""
    yield a + b, "+", False
    yield a * b, "*", False
    yield a - b, "-", False
    yield b - a, "-", True
    if b != 0:
        yield a / b, "/", False
    if a != 0:
        yield b / a, "/", True


def _reaches_24(a: Fraction, b: Fraction) -> bool:
    return any(result == TARGET for result, _, _ in _combinations(a, b))


def _apply(state: Game24State, i: int, j: int, result: Fraction, op: str, swapped: bool) -> Step[Game24State]:
    """Replace numbers i and j by their combination; the thought reads like the ToT paper's steps."""
    first, second = (j, i) if swapped else (i, j)
    rest = [k for k in range(len(state.numbers)) if k not in (i, j)]
    numbers = (*(state.numbers[k] for k in rest), result)
    exprs = (*(state.exprs[k] for k in rest), f"({state.exprs[first]} {op} {state.exprs[second]})")
    left = " ".join(format_number(n) for n in sorted(numbers))
    a, b = format_number(state.numbers[first]), format_number(state.numbers[second])
    thought = f"{a} {op} {b} = {format_number(result)} (left: {left})"
    return Step(thought=thought, state=Game24State(numbers=numbers, exprs=exprs))


def _strip_outer_parens(expr: str) -> str:
    """'((1 + 2) * 8)' -> '(1 + 2) * 8': our expressions always wrap each combination once."""
    return expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr


_OPERAND = r"\(?-?\d+(?:/\d+)?\)?"
_STEP_LINE = re.compile(rf"(?P<a>{_OPERAND})\s*(?P<op>[-+*/x\u00d7\u00f7])\s*(?P<b>{_OPERAND})\s*=")
_OPS = {"+": "+", "-": "-", "*": "*", "x": "*", "\u00d7": "*", "/": "/", "\u00f7": "/"}


def _parse_operand(text: str) -> Fraction:
    return Fraction(text.strip("()"))


class Game24(Task[Game24State]):
    name: ClassVar[str] = "game24"
    description: ClassVar[str] = (
        "Game of 24: combine four numbers (e.g. '4 9 10 13') with + - * / to make 24. "
        "Exact checker and rule-based proposals; runs without an LLM."
    )
    requires_llm: ClassVar[bool] = False
    default_generator: ClassVar[GeneratorName] = "propose"

    def parse_problem(self, problem: str) -> Game24State:
        tokens = problem.replace(",", " ").split()
        message = f"game24 problem must be exactly four integers between 1 and {_MAX_NUMBER}, e.g. '4 9 10 13'"
        if len(tokens) != 4 or not all(t.isdigit() for t in tokens):
            raise ValueError(message)
        values = [int(t) for t in tokens]
        if not all(1 <= v <= _MAX_NUMBER for v in values):
            raise ValueError(message)
        return Game24State(numbers=tuple(Fraction(v) for v in values), exprs=tuple(str(v) for v in values))

    def state_key(self, state: Game24State) -> Hashable:
        # Only the multiset of remaining numbers matters for what can still be reached.
        return tuple(sorted(state.numbers))

    def render_state(self, state: Game24State) -> str:
        return " ".join(format_number(n) for n in sorted(state.numbers))

    def is_terminal(self, state: Game24State) -> bool:
        return len(state.numbers) == 1

    def is_solution(self, state: Game24State) -> bool:
        return len(state.numbers) == 1 and state.numbers[0] == TARGET

    def is_dead_end(self, state: Game24State) -> bool:
        """Exact for one or two numbers; three or more are left to the evaluator."""
        if len(state.numbers) == 1:
            return state.numbers[0] != TARGET
        if len(state.numbers) == 2:
            return not _reaches_24(*state.numbers)
        return False

    def rule_proposals(self, state: Game24State) -> list[Step[Game24State]]:
        steps: dict[Hashable, Step[Game24State]] = {}
        count = len(state.numbers)
        for i in range(count):
            for j in range(i + 1, count):
                for result, op, swapped in _combinations(state.numbers[i], state.numbers[j]):
                    step = _apply(state, i, j, result, op, swapped)
                    steps.setdefault(self.state_key(step.state), step)
        return list(steps.values())

    def heuristic(self, state: Game24State) -> float:
        """Promise of a state, deliberately short of solving it.

        One or two numbers are scored exactly (1.0 when 24 is made or one step away). For
        three numbers we look one step ahead only and count the two-number children that
        land *near* 24 (within 1): a rough sense of "these numbers play well together"
        that misjudges some states, as a model's intuition would. Beam width then matters.
        """
        numbers = state.numbers
        if len(numbers) == 1:
            return 1.0 if numbers[0] == TARGET else 0.0
        if len(numbers) == 2:
            return 1.0 if _reaches_24(*numbers) else 0.0
        if len(numbers) > 3:
            return 0.5  # only the (never scored) root has four numbers
        children = self.rule_proposals(state)
        near = sum(1 for child in children if _lands_near_24(child.state.numbers))
        # On the value scale (sure 1, likely 0.5, impossible 0): no near child reads as
        # "unlikely", any near child as "likely", more of them as more likely.
        return 0.4 + 0.5 * near / len(children) if near else 0.1

    # --- LLM prompts (used when an LLM is configured) -----------------------
    def propose_prompt(self, problem: str, state: Game24State, n: int) -> str:
        return (
            "We play the Game of 24: combine numbers with + - * / until one number, 24, is left. "
            "A step picks two of the remaining numbers and replaces them with their result.\n"
            "Example:\nInput: 3 5 7 12\nPossible next steps:\n"
            "3 + 5 = 8 (left: 7 8 12)\n12 - 7 = 5 (left: 3 5 5)\n5 * 3 = 15 (left: 7 12 15)\n"
            "12 / 3 = 4 (left: 4 5 7)\n\n"
            f"Input: {self.render_state(state)}\n"
            f"Give up to {n} possible next steps, one per line, in the same format.\nPossible next steps:\n"
        )

    def parse_proposals(self, state: Game24State, text: str) -> list[Step[Game24State]]:
        steps: dict[Hashable, Step[Game24State]] = {}
        for line in text.splitlines():
            step = self._parse_step(state, line)
            if step is not None:
                steps.setdefault(self.state_key(step.state), step)
        return list(steps.values())

    def sample_prompt(self, problem: str, state: Game24State) -> str:
        return self.propose_prompt(problem, state, 1).replace("Give up to 1 possible next steps", "Give one next step")

    def value_prompt(self, problem: str, state: Game24State) -> str:
        return (
            "Can these numbers reach 24 with + - * / (each number used exactly once)? "
            "Think briefly, then answer with one word on the last line: sure, likely or impossible.\n"
            f"Numbers: {self.render_state(state)}\n"
        )

    def direct_answer(self, problem: str, state: Game24State) -> str | None:
        if not self.is_solution(state):
            return None
        return f"{_strip_outer_parens(state.exprs[0])} = 24"

    def _parse_step(self, state: Game24State, line: str) -> Step[Game24State] | None:
        """Read 'a op b = ...' and redo it exactly; the model's arithmetic is never trusted."""
        match = _STEP_LINE.search(line)
        if match is None:
            return None
        try:
            a, b = _parse_operand(match["a"]), _parse_operand(match["b"])
        except (ValueError, ZeroDivisionError):
            return None
        i = _index_of(state.numbers, a, exclude=-1)
        j = _index_of(state.numbers, b, exclude=i)
        op = _OPS[match["op"]]
        if i < 0 or j < 0 or (op == "/" and b == 0):
            return None
        result = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else Fraction(0)}[op]
        low, high = min(i, j), max(i, j)
        return _apply(state, low, high, result, op, swapped=i > j)


def _index_of(numbers: tuple[Fraction, ...], value: Fraction, *, exclude: int) -> int:
    return next((k for k, n in enumerate(numbers) if n == value and k != exclude), -1)


def _lands_near_24(numbers: tuple[Fraction, ...]) -> bool:
    return any(abs(result - TARGET) <= _NEAR for result, _, _ in _combinations(*numbers))
