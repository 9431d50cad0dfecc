"""What a run is: the request, the stored record, the views callers see, and the errors they get.

REST and MCP share these Structs, so both faces validate the same way and document the same
schemas. Errors are ``ProblemError`` subclasses: REST turns them into problem+json as they are,
MCP turns their detail into a tool error message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from platform_common.problems import ProblemError
from tree_of_thoughts.engine import EvaluatorName, Node, SearchParams, SearchStats, Strategy
from tree_of_thoughts.tasks import GeneratorName

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE_STATUSES: tuple[RunStatus, ...] = ("queued", "running")
FINISHED_STATUSES: tuple[RunStatus, ...] = ("succeeded", "failed", "cancelled")

# How the search ended; the engine's reasons plus the two a run can meet outside the engine.
StopReasonName = Literal[
    "solved",
    "exhausted",
    "max_depth",
    "max_nodes",
    "max_llm_calls",
    "max_tokens",
    "timeout",
    "cancelled",
    "error",
    "worker_lost",
]

MAX_PROBLEM_CHARS = 4_000


class RunRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Start a run. Omitted budgets default to the server's maxima; larger ones are refused."""

    task: Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="Task name (see GET /api/v1/tasks).")]
    problem: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_PROBLEM_CHARS,
            description="The problem, in the task's format (game24: four integers, e.g. '4 9 10 13').",
        ),
    ]
    strategy: Annotated[Strategy, msgspec.Meta(description="Search strategy.")] = "bfs"
    breadth: Annotated[
        int, msgspec.Meta(ge=1, le=20, description="Beam width (bfs), children per node (dfs), batch (best_first).")
    ] = 5
    max_depth: Annotated[int, msgspec.Meta(ge=1, description="Deepest level searched.")] | None = None
    evaluator: Annotated[EvaluatorName, msgspec.Meta(description="How states are scored.")] | None = None
    generator: Annotated[GeneratorName, msgspec.Meta(description="How thoughts are generated.")] | None = None
    max_nodes: Annotated[int, msgspec.Meta(ge=1, description="Budget: tree nodes.")] | None = None
    max_llm_calls: Annotated[int, msgspec.Meta(ge=1, description="Budget: LLM calls.")] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, description="Budget: LLM tokens (prompt + completion).")] | None = (
        None
    )
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, description="Budget: wall-clock seconds.")] | None = None


class RunParams(msgspec.Struct, frozen=True, kw_only=True):
    """A request after defaults and caps were applied: what the worker runs, stored with the run."""

    task: str
    problem: str
    strategy: Strategy
    breadth: int
    max_depth: int
    evaluator: EvaluatorName
    generator: GeneratorName | None
    max_nodes: int
    max_llm_calls: int
    max_tokens: int
    timeout_seconds: float

    def search_params(self) -> SearchParams:
        return SearchParams(
            strategy=self.strategy,
            breadth=self.breadth,
            max_depth=self.max_depth,
            evaluator=self.evaluator,
            generator=self.generator,
            max_nodes=self.max_nodes,
            max_llm_calls=self.max_llm_calls,
            max_tokens=self.max_tokens,
            timeout_seconds=self.timeout_seconds,
        )


class Run(msgspec.Struct, kw_only=True):
    """One run as stored. ``tree`` is only loaded when asked for (it can be large)."""

    id: str
    owner: str
    params: RunParams
    status: RunStatus
    created_at: datetime
    progress: float = 0.0
    progress_message: str = ""
    answer: str | None = None
    solved: bool = False
    stop_reason: StopReasonName | None = None
    error: str | None = None
    stats: SearchStats | None = None
    best_node_id: int | None = None
    tree: list[Node] | None = None
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunOutcome(msgspec.Struct, kw_only=True):
    """How a run ended, as the worker records it."""

    status: RunStatus
    stop_reason: StopReasonName
    progress: float = 0.0
    progress_message: str = ""
    answer: str | None = None
    solved: bool = False
    error: str | None = None
    stats: SearchStats | None = None
    best_node_id: int | None = None
    tree: list[Node] | None = None


class Progress(msgspec.Struct):
    value: Annotated[float, msgspec.Meta(ge=0, le=1, description="Fraction of the search budget used.")]
    message: str


class RunView(msgspec.Struct, kw_only=True):
    """A run as callers see it (no owner, no tree: the tree has its own endpoint)."""

    id: str
    status: RunStatus
    task: str
    answer: str | None
    solved: bool
    stop_reason: StopReasonName | None
    error: str | None
    progress: Progress
    cancel_requested: bool
    stats: SearchStats | None
    params: RunParams
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, run: Run) -> RunView:
        return cls(
            id=run.id,
            status=run.status,
            task=run.params.task,
            answer=run.answer,
            solved=run.solved,
            stop_reason=run.stop_reason,
            error=run.error,
            progress=Progress(value=run.progress, message=run.progress_message),
            cancel_requested=run.cancel_requested,
            stats=run.stats,
            params=run.params,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class RunPage(msgspec.Struct):
    """One page of the caller's runs, newest first; pass ``next_cursor`` back for the next page."""

    items: list[RunView]
    next_cursor: str | None


class RunTree(msgspec.Struct):
    """The search tree. Empty until the run ends: the engine hands over the tree when it stops."""

    run_id: str
    status: RunStatus
    best_node_id: int | None
    nodes: list[Node]


class RunNotFound(ProblemError):
    """404 for runs that do not exist *and* for other callers' runs, so ids leak nothing."""

    def __init__(self, run_id: str) -> None:
        super().__init__(404, "Run not found", detail=f"No run {run_id!r} is visible to you.")


class RunRejected(ProblemError):
    """422: the request is well-formed but cannot be run (bad problem, budget over a cap, no LLM)."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, "Run rejected", detail=detail)


class TooManyRuns(ProblemError):
    """429: the caller already has as many active runs as the server allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            429,
            "Too many active runs",
            detail=f"You already have {limit} queued or running runs; wait for one to finish or cancel one.",
            headers={"Retry-After": "10"},
        )


class RunAlreadyFinished(ProblemError):
    """409: only a queued or running run can be cancelled."""

    def __init__(self, run_id: str, status: RunStatus) -> None:
        super().__init__(409, "Run already finished", detail=f"Run {run_id} already ended with status {status!r}.")


class InvalidCursor(ProblemError):
    def __init__(self) -> None:
        super().__init__(400, "Invalid cursor", detail="Pass back a next_cursor value exactly as it was returned.")
