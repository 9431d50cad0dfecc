"""The contract between the search engine and a problem domain.

The engine only ever sees states through a `Task`: it asks the task for the initial
state, for next steps (by rules or via LLM prompts), for scores and for the final answer.
That keeps search strategies domain-free and makes a new task one module.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Literal, TypeVar

S = TypeVar("S")

GeneratorName = Literal["propose", "sample"]


@dataclass(frozen=True, slots=True)
class Step(Generic[S]):
    """A thought (the text of one reasoning step) and the state it leads to."""

    thought: str
    state: S


# ToT-style verbal judgements, mapped onto the engine's 0..1 score scale.
_VERDICT_SCORES = {"sure": 1.0, "likely": 0.5, "impossible": 0.0}
_VERDICT = re.compile(r"\b(sure|likely|impossible)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:/\s*(10|1)\b)?")
_VOTE = re.compile(r"best choice is\s*:?\s*\**\s*(\d+)", re.IGNORECASE)


class Task(ABC, Generic[S]):
    """A problem domain the engine can search over.

    Methods with a default are optional capabilities: a task without rule-based
    proposals, a heuristic or an exact checker simply keeps the default.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    requires_llm: ClassVar[bool]
    default_generator: ClassVar[GeneratorName] = "propose"

    # --- problem and states -------------------------------------------------
    @abstractmethod
    def parse_problem(self, problem: str) -> S:
        """Validate the problem text and return the initial state; ValueError says what is wrong."""

    def validate_problem(self, problem: str) -> None:
        """Cheap validation for request handlers that want to reject bad input before starting a run."""
        self.parse_problem(problem)

    @abstractmethod
    def state_key(self, state: S) -> Hashable:
        """Canonical key: states with equal keys are the same for search, so only one is expanded."""

    @abstractmethod
    def render_state(self, state: S) -> str:
        """Human-readable state for result trees and prompts."""

    def is_terminal(self, state: S) -> bool:
        """True when the state cannot be expanded further."""
        return False

    # --- exact checker (where the domain has one) ---------------------------
    def is_solution(self, state: S) -> bool:
        return False

    def is_dead_end(self, state: S) -> bool:
        return False

    # --- rule-based generation and scoring ----------------------------------
    def rule_proposals(self, state: S) -> list[Step[S]] | None:
        """All next steps by rule, or None when the task has no rules (then an LLM must propose)."""
        return None

    def heuristic(self, state: S) -> float | None:
        """A deterministic 0..1 promise score, or None when the task has none."""
        return None

    # --- LLM prompts --------------------------------------------------------
    @abstractmethod
    def propose_prompt(self, problem: str, state: S, n: int) -> str:
        """Ask for up to n different next steps in one completion."""

    @abstractmethod
    def parse_proposals(self, state: S, text: str) -> list[Step[S]]:
        """Turn a propose completion into steps; malformed lines are dropped."""

    @abstractmethod
    def sample_prompt(self, problem: str, state: S) -> str:
        """Ask for exactly one next step (sampled independently k times)."""

    def parse_sample(self, state: S, text: str) -> Step[S] | None:
        steps = self.parse_proposals(state, text)
        return steps[0] if steps else None

    @abstractmethod
    def value_prompt(self, problem: str, state: S) -> str:
        """Ask how promising one state is (answered with sure/likely/impossible or a 0-10 score)."""

    def parse_value(self, text: str) -> float | None:
        return parse_verdict(text)

    def vote_prompt(self, problem: str, states: Sequence[S]) -> str:
        choices = "\n".join(f"Choice {i}:\n{self.render_state(s)}" for i, s in enumerate(states, start=1))
        return (
            f"Problem:\n{problem}\n\nSeveral partial solutions follow. Analyse each briefly, then decide "
            f"which is most promising.\n\n{choices}\n\n"
            'Conclude with a last line of the form "The best choice is N".'
        )

    def parse_vote(self, text: str, n_choices: int) -> int | None:
        """0-based index of the chosen state, or None when the vote is unreadable."""
        matches = _VOTE.findall(text)
        if not matches:
            return None
        choice = int(matches[-1]) - 1
        return choice if 0 <= choice < n_choices else None

    # --- answers ------------------------------------------------------------
    def direct_answer(self, problem: str, state: S) -> str | None:
        """The answer a state carries by itself (e.g. a verified expression), if any."""
        return None

    def answer_prompt(self, problem: str, state: S) -> str | None:
        """Prompt for a final LLM call that writes the answer from the best state (None: no such call)."""
        return None

    def extract_answer(self, text: str) -> str:
        """The answer string inside a final-answer completion."""
        return text.strip()


def parse_verdict(text: str) -> float | None:
    """Score a value completion: the last sure/likely/impossible wins, else an `N/10` or bare 0-10 number."""
    verdicts = _VERDICT.findall(text)
    if verdicts:
        return _VERDICT_SCORES[verdicts[-1].lower()]
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    value, scale = numbers[-1]
    top = 1.0 if scale == "1" else 10.0
    return min(1.0, max(0.0, float(value) / top))
