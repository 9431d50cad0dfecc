"""Problem domains the search engine can work on.

Adding a task: write a module with a `Task` subclass and add one line to `TASKS`.
"""

from __future__ import annotations

from typing import Any

from tree_of_thoughts.tasks.base import GeneratorName, Step, Task, parse_verdict
from tree_of_thoughts.tasks.game24 import Game24, Game24State
from tree_of_thoughts.tasks.generic import Generic, GenericState

__all__ = [
    "TASKS",
    "Game24",
    "Game24State",
    "GeneratorName",
    "Generic",
    "GenericState",
    "Step",
    "Task",
    "UnknownTaskError",
    "get_task",
    "parse_verdict",
]

TASKS: dict[str, Task[Any]] = {
    Game24.name: Game24(),
    Generic.name: Generic(),
}


class UnknownTaskError(KeyError, ValueError):
    """Raised by get_task; a ValueError too, so request validation can treat it like bad input."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_task(name: str) -> Task[Any]:
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}") from None
