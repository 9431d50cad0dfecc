"""Where runs live: the ``RunStore`` protocol and its in-memory implementation.

The service only talks to this protocol, so a replica without DATABASE_URL behaves exactly like
one with it, except that its runs vanish with the process and no other replica can see them.
Every read takes the owner: a run of someone else is indistinguishable from a missing one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import msgspec

from tree_of_thoughts.runs.models import ACTIVE_STATUSES, FINISHED_STATUSES, Run, RunOutcome, RunParams, RunStatus

# A page position: the (created_at, id) of the last run of the previous page.
Cursor = tuple[datetime, str]


class RunStore(Protocol):
    async def create(self, run_id: str, owner: str, params: RunParams, *, max_active: int) -> Run | None:
        """Insert a queued run; None (nothing inserted) when ``owner`` already has ``max_active`` active runs."""

    async def get(self, run_id: str, owner: str, *, with_tree: bool = False) -> Run | None: ...

    async def list(self, owner: str, *, status: RunStatus | None, limit: int, after: Cursor | None) -> list[Run]:
        """The owner's runs, newest first, without trees."""

    async def mark_running(self, run_id: str) -> None: ...

    async def set_progress(self, run_id: str, progress: float, message: str) -> None: ...

    async def heartbeat(self, run_id: str) -> bool:
        """Record that the worker is alive; returns whether a cancel was requested (by any replica)."""

    async def request_cancel(self, run_id: str, owner: str) -> Run | None:
        """Flag an active run for cancellation; returns the run (unchanged if finished), None if not visible."""

    async def finish(self, run_id: str, outcome: RunOutcome) -> None: ...

    async def sweep(self, *, finished_before: datetime) -> int:
        """Delete runs that finished before the cutoff and settle runs whose worker died; returns deletions."""


def now() -> datetime:
    return datetime.now(UTC)


class MemoryRunStore:
    """Runs in a dict: for one process without a database (tests, local use, ``workers=1``)."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}

    async def create(self, run_id: str, owner: str, params: RunParams, *, max_active: int) -> Run | None:
        active = sum(1 for r in self._runs.values() if r.owner == owner and r.status in ACTIVE_STATUSES)
        if active >= max_active:
            return None
        run = Run(id=run_id, owner=owner, params=params, status="queued", created_at=now())
        self._runs[run_id] = run
        return _copy(run, with_tree=False)

    async def get(self, run_id: str, owner: str, *, with_tree: bool = False) -> Run | None:
        run = self._runs.get(run_id)
        return _copy(run, with_tree=with_tree) if run is not None and run.owner == owner else None

    async def list(self, owner: str, *, status: RunStatus | None, limit: int, after: Cursor | None) -> list[Run]:
        runs = sorted(
            (r for r in self._runs.values() if r.owner == owner and (status is None or r.status == status)),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )
        if after is not None:
            runs = [r for r in runs if (r.created_at, r.id) < after]
        return [_copy(r, with_tree=False) for r in runs[:limit]]

    async def mark_running(self, run_id: str) -> None:
        if (run := self._runs.get(run_id)) is not None and run.status == "queued":
            run.status, run.started_at = "running", now()

    async def set_progress(self, run_id: str, progress: float, message: str) -> None:
        if (run := self._runs.get(run_id)) is not None:
            run.progress, run.progress_message = progress, message

    async def heartbeat(self, run_id: str) -> bool:
        run = self._runs.get(run_id)
        return run is not None and run.cancel_requested

    async def request_cancel(self, run_id: str, owner: str) -> Run | None:
        run = self._runs.get(run_id)
        if run is None or run.owner != owner:
            return None
        if run.status in ACTIVE_STATUSES:
            run.cancel_requested = True
        return _copy(run, with_tree=False)

    async def finish(self, run_id: str, outcome: RunOutcome) -> None:
        run = self._runs.get(run_id)
        if run is None or run.status in FINISHED_STATUSES:
            return
        for field in outcome.__struct_fields__:
            setattr(run, field, getattr(outcome, field))
        run.finished_at = now()

    async def sweep(self, *, finished_before: datetime) -> int:
        # A worker here lives in this process, so no run can outlive its worker: nothing to settle.
        expired = [r.id for r in self._runs.values() if r.finished_at is not None and r.finished_at < finished_before]
        for run_id in expired:
            del self._runs[run_id]
        return len(expired)


def _copy(run: Run, *, with_tree: bool) -> Run:
    """Callers get a snapshot, never the live record the worker keeps updating."""
    return msgspec.structs.replace(run, tree=list(run.tree) if with_tree and run.tree is not None else None)
