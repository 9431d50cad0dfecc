"""Free-form problems: every step, score and the final answer come from the LLM.

A state is the list of reasoning steps taken so far. A step that starts with
"Final answer:" ends its branch and carries the answer itself; otherwise a last LLM
call writes the answer from the best path.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar

from tree_of_thoughts.tasks.base import GeneratorName, Step, Task

_MAX_PROBLEM_CHARS = 20_000
_MAX_STEP_CHARS = 2_000
_FINAL = "final answer:"
# Leading list markers models like to add: "1.", "2)", "-", "*", "Step 3:".
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|step\s*\d*\s*[:.)-])\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GenericState:
    steps: tuple[str, ...] = ()


def _clean_step(line: str) -> str:
    return " ".join(_MARKER.sub("", line, count=1).split())[:_MAX_STEP_CHARS]


def _is_final(step: str) -> bool:
    return step.lower().startswith(_FINAL)


class Generic(Task[GenericState]):
    name: ClassVar[str] = "generic"
    description: ClassVar[str] = (
        "Any free-form problem. The LLM proposes steps, scores partial solutions and writes "
        "the final answer; requires an LLM."
    )
    requires_llm: ClassVar[bool] = True
    # Independent samples suit open-ended steps better than one list of proposals.
    default_generator: ClassVar[GeneratorName] = "sample"

    def parse_problem(self, problem: str) -> GenericState:
        text = problem.strip()
        if not text:
            raise ValueError("problem must not be empty")
        if len(text) > _MAX_PROBLEM_CHARS:
            raise ValueError(f"problem must be at most {_MAX_PROBLEM_CHARS} characters")
        return GenericState()

    def state_key(self, state: GenericState) -> Hashable:
        # Case and spacing differences between samples do not make a different line of thought.
        return tuple(" ".join(step.lower().split()) for step in state.steps)

    def render_state(self, state: GenericState) -> str:
        if not state.steps:
            return "(no steps yet)"
        return "\n".join(f"Step {i}: {step}" for i, step in enumerate(state.steps, start=1))

    def is_terminal(self, state: GenericState) -> bool:
        return bool(state.steps) and _is_final(state.steps[-1])

    def _context(self, problem: str, state: GenericState) -> str:
        return f"Problem:\n{problem}\n\nSteps so far:\n{self.render_state(state)}\n"

    def propose_prompt(self, problem: str, state: GenericState, n: int) -> str:
        return (
            f"{self._context(problem, state)}\n"
            f"Propose up to {n} different possible next steps, one per line. Each is a single concise "
            f'step of reasoning. If the problem can be answered now, a step may start with "Final answer:".'
        )

    def parse_proposals(self, state: GenericState, text: str) -> list[Step[GenericState]]:
        steps: list[Step[GenericState]] = []
        for line in text.splitlines():
            step = _clean_step(line)
            if step:
                steps.append(Step(thought=step, state=GenericState(steps=(*state.steps, step))))
        return steps

    def sample_prompt(self, problem: str, state: GenericState) -> str:
        return (
            f"{self._context(problem, state)}\n"
            "Write only the next step of reasoning, in one or two sentences. If the problem can be "
            'answered now, start the step with "Final answer:".'
        )

    def parse_sample(self, state: GenericState, text: str) -> Step[GenericState] | None:
        step = _clean_step(text)
        return Step(thought=step, state=GenericState(steps=(*state.steps, step))) if step else None

    def value_prompt(self, problem: str, state: GenericState) -> str:
        return (
            f"{self._context(problem, state)}\n"
            "Judge whether these steps are correct and lead towards a correct answer. Think briefly, "
            "then answer with one word on the last line: sure, likely or impossible."
        )

    def direct_answer(self, problem: str, state: GenericState) -> str | None:
        if self.is_terminal(state):
            return state.steps[-1][len(_FINAL) :].strip() or None
        return None

    def answer_prompt(self, problem: str, state: GenericState) -> str:
        return (
            f"{self._context(problem, state)}\n"
            "Using these steps, write the final answer to the problem. Reply with the answer only."
        )

    def extract_answer(self, text: str) -> str:
        answer = text.strip()
        return answer[len(_FINAL) :].strip() if _is_final(answer) else answer
