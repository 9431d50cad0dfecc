"""Runs as a service: validate and admit requests, run each search in a worker task, cancel, expire.

A run's worker is an asyncio task on the replica that admitted it. Beside the search it keeps a
watcher that refreshes the run's heartbeat about once a second and reads its cancel flag, so a
cancel received by any replica reaches it. Cancelling first asks the engine to stop between rounds
(``should_stop``), which keeps the partial tree; a search that does not stop within
``CANCEL_GRACE_SECONDS`` is cut off by cancelling its task, which aborts in-flight LLM calls.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from platform_common.db import DatabaseUnavailable
from tree_of_thoughts.config import TotSettings
from tree_of_thoughts.engine import SearchResult, check_run, run_search
from tree_of_thoughts.llm import LLMClient, LLMError
from tree_of_thoughts.observability import RUNS_ACTIVE, record_run
from tree_of_thoughts.runs.models import (
    InvalidCursor,
    Run,
    RunAlreadyFinished,
    RunNotFound,
    RunOutcome,
    RunPage,
    RunParams,
    RunRejected,
    RunRequest,
    RunStatus,
    RunView,
    TooManyRuns,
)
from tree_of_thoughts.runs.store import Cursor, RunStore, now
from tree_of_thoughts.tasks import UnknownTaskError, get_task

logger = logging.getLogger(__name__)

ProgressListener = Callable[[float, str], Awaitable[None]]

POLL_SECONDS = 1.0
CANCEL_GRACE_SECONDS = 3.0
# Progress is kept in memory at every round but written to the store at most this often.
PROGRESS_WRITE_SECONDS = 0.5
SWEEP_SECONDS = 60.0

SHUTDOWN_ERROR = "The server shut down before this run finished; start the run again."


@dataclass
class _Worker:
    run: Run
    listeners: list[ProgressListener]
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    progress: float = 0.0
    message: str = ""
    last_write: float = 0.0


class RunService:
    def __init__(self, store: RunStore, settings: TotSettings, llm: LLMClient | None) -> None:
        self._store = store
        self._settings = settings
        self._llm = llm
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._workers: dict[str, _Worker] = {}
        self._closing = False

    @property
    def llm_configured(self) -> bool:
        return self._llm is not None

    # --- lifecycle ------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sweep expired and lost runs while the app runs; on the way out stop every local worker."""
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            yield
        finally:
            self._closing = True
            sweeper.cancel()
            workers = [w.task for w in self._workers.values() if w.task is not None]
            for task in workers:
                task.cancel()
            await asyncio.gather(sweeper, *workers, return_exceptions=True)
            if self._llm is not None:
                await self._llm.aclose()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep()
            except Exception:
                logger.exception("run cleanup failed; retrying in %.0f s", SWEEP_SECONDS)

    async def sweep(self) -> int:
        """Delete runs finished more than RUN_TTL_HOURS ago (and, with PostgreSQL, settle lost ones)."""
        cutoff = now() - timedelta(hours=self._settings.run_ttl_hours)
        deleted = await self._store.sweep(finished_before=cutoff)
        if deleted:
            logger.info("deleted %d expired runs", deleted)
        return deleted

    # --- requests -------------------------------------------------------------
    async def submit(self, request: RunRequest, owner: str, *, on_progress: ProgressListener | None = None) -> Run:
        """Validate, admit and start a run; raises RunRejected (422) or TooManyRuns (429)."""
        params = self.resolve(request)
        run = await self._store.create(
            str(uuid.uuid4()), owner, params, max_active=self._settings.max_active_runs_per_owner
        )
        if run is None:
            raise TooManyRuns(self._settings.max_active_runs_per_owner)
        worker = _Worker(run=run, listeners=[on_progress] if on_progress else [])
        self._workers[run.id] = worker
        worker.task = asyncio.create_task(self._execute(worker), name=f"tot-run-{run.id}")
        return run

    def resolve(self, request: RunRequest) -> RunParams:
        """Apply defaults and server caps, and refuse what cannot run here, before anything is stored."""
        s = self._settings
        try:
            task = get_task(request.task)
        except UnknownTaskError as exc:
            raise RunRejected(str(exc)) from None
        caps = (
            ("max_depth", request.max_depth, s.max_thoughts_depth),
            ("max_nodes", request.max_nodes, s.max_run_nodes),
            ("max_llm_calls", request.max_llm_calls, s.max_run_llm_calls),
            ("max_tokens", request.max_tokens, s.max_run_tokens),
            ("timeout_seconds", request.timeout_seconds, s.max_run_seconds),
        )
        for name, value, cap in caps:
            if value is not None and value > cap:
                raise RunRejected(f"{name} {value:g} is over this server's limit of {cap:g}")
        params = RunParams(
            task=task.name,
            problem=request.problem,
            strategy=request.strategy,
            breadth=request.breadth,
            max_depth=request.max_depth or s.max_thoughts_depth,
            evaluator=request.evaluator or s.evaluation_strategy,
            generator=request.generator,
            max_nodes=request.max_nodes or s.max_run_nodes,
            max_llm_calls=request.max_llm_calls or s.max_run_llm_calls,
            max_tokens=request.max_tokens or s.max_run_tokens,
            timeout_seconds=request.timeout_seconds or s.max_run_seconds,
        )
        try:
            # The engine's own checks: the problem parses, and the run has the LLM it needs.
            check_run(task, request.problem, params.search_params(), llm_available=self._llm is not None)
        except ValueError as exc:
            raise RunRejected(str(exc)) from None
        return params

    async def get(self, run_id: str, owner: str, *, with_tree: bool = False) -> Run:
        run = await self._store.get(run_id, owner, with_tree=with_tree) if _is_uuid(run_id) else None
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def list(self, owner: str, *, status: RunStatus | None, limit: int, cursor: str | None) -> RunPage:
        runs = await self._store.list(owner, status=status, limit=limit, after=_decode_cursor(cursor))
        next_cursor = _encode_cursor((runs[-1].created_at, runs[-1].id)) if len(runs) == limit else None
        return RunPage(items=[RunView.of(r) for r in runs], next_cursor=next_cursor)

    async def cancel(self, run_id: str, owner: str) -> Run:
        """Ask a run to stop (idempotent); 409 once it has succeeded or failed."""
        run = await self._store.request_cancel(run_id, owner) if _is_uuid(run_id) else None
        if run is None:
            raise RunNotFound(run_id)
        if run.status in ("succeeded", "failed"):
            raise RunAlreadyFinished(run_id, run.status)
        if (worker := self._workers.get(run_id)) is not None:
            worker.cancel.set()
        return run

    def abandon(self, run_id: str) -> None:
        """Stop a local run whose caller is gone. Synchronous, so it works inside a cancelled scope."""
        if (worker := self._workers.get(run_id)) is not None:
            worker.cancel.set()

    async def wait(self, run_id: str, owner: str) -> Run:
        """Wait for a run this replica is working on to end; cancelling the waiter leaves the run alone."""
        worker = self._workers.get(run_id)
        if worker is not None and worker.task is not None:
            await asyncio.shield(worker.task)
        return await self.get(run_id, owner)

    # --- the worker -----------------------------------------------------------
    async def _execute(self, worker: _Worker) -> None:
        run = worker.run
        RUNS_ACTIVE.inc()
        watcher = asyncio.create_task(self._watch(worker))
        outcome = RunOutcome(status="failed", stop_reason="error", error=_internal_error(run.id))
        try:
            outcome = await self._search(worker)
        except asyncio.CancelledError:
            # Either the grace period of a cancel ran out, or the server is shutting down.
            if worker.cancel.is_set() and not self._closing:
                outcome = RunOutcome(status="cancelled", stop_reason="cancelled")
            else:
                outcome = RunOutcome(status="failed", stop_reason="worker_lost", error=SHUTDOWN_ERROR)
        finally:
            # Stop the watcher first (no await in between), so it can never cancel us while we record.
            watcher.cancel()
            RUNS_ACTIVE.dec()
            self._workers.pop(run.id, None)
            outcome_label = (
                outcome.status if outcome.status != "succeeded" else ("solved" if outcome.solved else "unsolved")
            )
            record_run(run.params.strategy, run.params.task, outcome_label, outcome.stats)
            outcome.progress, outcome.progress_message = worker.progress, worker.message
            try:
                await self._store.finish(run.id, outcome)
            except Exception:
                # The run stays "running" until its heartbeat goes stale; then it reads as worker_lost.
                logger.exception("could not record the end of run %s", run.id)

    async def _search(self, worker: _Worker) -> RunOutcome:
        run = worker.run
        async with self._slots:
            if worker.cancel.is_set():
                return RunOutcome(status="cancelled", stop_reason="cancelled")
            await self._store.mark_running(run.id)
            try:
                result = await run_search(
                    get_task(run.params.task),
                    run.params.problem,
                    run.params.search_params(),
                    llm=self._llm,
                    on_progress=lambda value, message: self._progress(worker, value, message),
                    should_stop=worker.cancel.is_set,
                )
            except (LLMError, ValueError) as exc:
                # Both carry messages written for the caller (LLMRequiredError is a ValueError).
                return RunOutcome(status="failed", stop_reason="error", error=str(exc))
            except Exception:
                logger.exception("run %s failed", run.id)
                return RunOutcome(status="failed", stop_reason="error", error=_internal_error(run.id))
        return _outcome(result)

    async def _progress(self, worker: _Worker, value: float, message: str) -> None:
        worker.progress, worker.message = value, message
        for listener in worker.listeners:
            with contextlib.suppress(Exception):
                await listener(value, message)
        clock = time.monotonic()
        if clock - worker.last_write < PROGRESS_WRITE_SECONDS:
            return
        worker.last_write = clock
        try:
            await self._store.set_progress(worker.run.id, value, message)
        except DatabaseUnavailable:
            logger.warning("could not record progress of run %s: database unavailable", worker.run.id)

    async def _watch(self, worker: _Worker) -> None:
        """Heartbeat and cancel poll; once a cancel is seen, cut the search off after the grace period."""
        while not worker.cancel.is_set():
            try:
                await asyncio.wait_for(worker.cancel.wait(), POLL_SECONDS)
            except TimeoutError:
                try:
                    if await self._store.heartbeat(worker.run.id):
                        worker.cancel.set()
                except DatabaseUnavailable:
                    logger.warning("heartbeat of run %s failed: database unavailable", worker.run.id)
        await asyncio.sleep(CANCEL_GRACE_SECONDS)
        if worker.task is not None:
            worker.task.cancel()


def _outcome(result: SearchResult) -> RunOutcome:
    return RunOutcome(
        status="cancelled" if result.stop_reason == "cancelled" else "succeeded",
        stop_reason=result.stop_reason,
        answer=result.answer,
        solved=result.solved,
        stats=result.stats,
        best_node_id=result.best_node_id,
        tree=result.nodes,
    )


def _internal_error(run_id: str) -> str:
    return f"The run failed because of an internal error; quote run id {run_id} when reporting it."


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _encode_cursor(cursor: Cursor) -> str:
    created, run_id = cursor
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{run_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> Cursor | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_id = text.split("|", 1)
        uuid.UUID(run_id)
        return datetime.fromisoformat(created), run_id
    except ValueError:
        raise InvalidCursor() from None
