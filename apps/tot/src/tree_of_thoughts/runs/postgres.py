"""Runs in PostgreSQL (table ``tot_runs``, migrations/0001_runs.sql): shared by every replica.

A run belongs to the replica that received it: its worker refreshes ``heartbeat_at`` about once a
second (and reads ``cancel_requested`` in the same statement, which is how a cancel received by
another replica reaches it). A queued or running run whose heartbeat is older than
``LOST_AFTER`` has lost its worker: reads report it as failed with stop_reason ``worker_lost``
at once, and the periodic sweep writes that down.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from platform_common.db import Database, advisory_key
from tree_of_thoughts.engine import Node, SearchStats
from tree_of_thoughts.runs.models import Run, RunOutcome, RunParams, RunStatus
from tree_of_thoughts.runs.store import Cursor

LOST_AFTER = timedelta(seconds=60)
WORKER_LOST_ERROR = "The server running this run stopped before it finished; start the run again."

_SWEEP_LOCK = advisory_key("tot:runs:sweep")

# Every statement using these passes LOST_AFTER as $1.
# Lost runs are reported as failed by every read, before the sweep has written it down.
_LOST = "(r.status IN ('queued', 'running') AND r.heartbeat_at < now() - $1::interval)"
_SUMMARY_COLUMNS = f"""
    r.id::text AS id, r.owner, r.params,
    CASE WHEN {_LOST} THEN 'failed' ELSE r.status END AS status,
    CASE WHEN {_LOST} THEN 'worker_lost' ELSE r.stop_reason END AS stop_reason,
    CASE WHEN {_LOST} THEN '{WORKER_LOST_ERROR}' ELSE r.error END AS error,
    CASE WHEN {_LOST} THEN r.heartbeat_at ELSE r.finished_at END AS finished_at,
    r.progress, r.progress_message, r.answer, r.solved, r.stats, r.best_node_id, r.cancel_requested,
    r.created_at, r.started_at"""

_COUNT_ACTIVE = (
    f"SELECT count(*) FROM tot_runs r WHERE r.owner = $2 AND r.status IN ('queued', 'running') AND NOT {_LOST}"  # noqa: S608
)
_INSERT = (
    f"INSERT INTO tot_runs AS r (id, owner, params, status) VALUES ($2, $3, $4, 'queued') RETURNING {_SUMMARY_COLUMNS}"  # noqa: S608
)


class PostgresRunStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, run_id: str, owner: str, params: RunParams, *, max_active: int) -> Run | None:
        async with self._db.connection() as conn, conn.transaction():
            # Serialise submissions per owner, so concurrent requests on any replica respect the cap.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(f"tot:runs:owner:{owner}"))
            active = await conn.fetchval(_COUNT_ACTIVE, LOST_AFTER, owner)
            if active >= max_active:
                return None
            row = await conn.fetchrow(_INSERT, LOST_AFTER, run_id, owner, params)
        return _run(row)

    async def get(self, run_id: str, owner: str, *, with_tree: bool = False) -> Run | None:
        tree = ", r.tree" if with_tree else ""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_SUMMARY_COLUMNS}{tree} FROM tot_runs r WHERE r.id = $2 AND r.owner = $3",  # noqa: S608
                LOST_AFTER,
                run_id,
                owner,
            )
        return None if row is None else _run(row)

    async def list(self, owner: str, *, status: RunStatus | None, limit: int, after: Cursor | None) -> list[Run]:
        created, last_id = after if after is not None else (None, None)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""SELECT * FROM (SELECT {_SUMMARY_COLUMNS} FROM tot_runs r WHERE r.owner = $2
                        AND ($4::timestamptz IS NULL OR (r.created_at, r.id) < ($4, $5::uuid))
                        ORDER BY r.created_at DESC, r.id DESC) AS page
                    WHERE $3::text IS NULL OR page.status = $3
                    LIMIT $6""",  # noqa: S608
                LOST_AFTER,
                owner,
                status,
                created,
                last_id,
                limit,
            )
        return [_run(row) for row in rows]

    async def mark_running(self, run_id: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE tot_runs SET status = 'running', started_at = now(), heartbeat_at = now() "
                "WHERE id = $1 AND status = 'queued'",
                run_id,
            )

    async def set_progress(self, run_id: str, progress: float, message: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE tot_runs SET progress = $2, progress_message = $3, heartbeat_at = now() "
                "WHERE id = $1 AND status IN ('queued', 'running')",
                run_id,
                progress,
                message,
            )

    async def heartbeat(self, run_id: str) -> bool:
        async with self._db.connection() as conn:
            cancel = await conn.fetchval(
                "UPDATE tot_runs SET heartbeat_at = now() WHERE id = $1 RETURNING cancel_requested", run_id
            )
        return bool(cancel)

    async def request_cancel(self, run_id: str, owner: str) -> Run | None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE tot_runs SET cancel_requested = true "
                "WHERE id = $1 AND owner = $2 AND status IN ('queued', 'running')",
                run_id,
                owner,
            )
        return await self.get(run_id, owner)

    async def finish(self, run_id: str, outcome: RunOutcome) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                """UPDATE tot_runs SET status = $2, stop_reason = $3, answer = $4, solved = $5, error = $6,
                       stats = $7, best_node_id = $8, tree = $9, progress = $10, progress_message = $11,
                       finished_at = now(), heartbeat_at = now()
                   WHERE id = $1 AND status IN ('queued', 'running')""",
                run_id,
                outcome.status,
                outcome.stop_reason,
                outcome.answer,
                outcome.solved,
                outcome.error,
                outcome.stats,
                outcome.best_node_id,
                outcome.tree,
                outcome.progress,
                outcome.progress_message,
            )

    async def sweep(self, *, finished_before: datetime) -> int:
        """One replica at a time (a transaction-scoped advisory lock); the others skip this round."""
        async with self._db.connection() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _SWEEP_LOCK):
                return 0
            await conn.execute(
                f"""UPDATE tot_runs r SET status = 'failed', stop_reason = 'worker_lost', error = $2,
                        finished_at = r.heartbeat_at
                    WHERE {_LOST}""",  # noqa: S608
                LOST_AFTER,
                WORKER_LOST_ERROR,
            )
            deleted = await conn.fetchval(
                "WITH gone AS (DELETE FROM tot_runs WHERE finished_at < $1 RETURNING 1) SELECT count(*) FROM gone",
                finished_before,
            )
        return int(deleted)


def _run(row: Any) -> Run:
    tree = row.get("tree")
    stats = row["stats"]
    return Run(
        id=row["id"],
        owner=row["owner"],
        params=msgspec.convert(row["params"], RunParams),
        status=row["status"],
        created_at=row["created_at"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        answer=row["answer"],
        solved=row["solved"],
        stop_reason=row["stop_reason"],
        error=row["error"],
        stats=None if stats is None else msgspec.convert(stats, SearchStats),
        best_node_id=row["best_node_id"],
        tree=None if tree is None else msgspec.convert(tree, list[Node]),
        cancel_requested=row["cancel_requested"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
