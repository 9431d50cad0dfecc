"""The call_tool audit log: a row per call in PostgreSQL and a JSON log line, arguments only as a digest.

A call the gateway forwards is written ``pending`` before the upstream is contacted (if that write
fails, the call is refused: no unaudited call) and finished with its outcome and latency; a call
refused by the policy is one finished row. Rows older than ``AUDIT_RETENTION_DAYS`` are deleted by
a sweep that every replica schedules and one at a time runs (PostgreSQL advisory lock).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from platform_common.auth import Principal
from platform_common.db import Database, DatabaseUnavailable, try_advisory_lock
from platform_common.logs import request_id_var
from platform_common.problems import ProblemError

logger = logging.getLogger(__name__)

Outcome = Literal["pending", "ok", "tool_error", "error", "not_found", "denied"]
SWEEP_INTERVAL_SECONDS = 3600.0
# Rows deleted per statement: a long backlog is removed in short transactions.
SWEEP_BATCH = 10_000


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    subject: str
    principal_kind: str
    tool: str
    upstream: str | None
    arguments_sha256: Annotated[str, msgspec.Meta(description="SHA-256 of the arguments' canonical JSON.")]
    outcome: Outcome
    latency_ms: float | None
    request_id: str | None


class AuditPage(msgspec.Struct):
    """Newest first; pass ``next_cursor`` back as ``cursor`` for older entries."""

    entries: list[AuditEntry]
    next_cursor: str | None = None


def arguments_digest(arguments: dict[str, Any]) -> str:
    """SHA-256 hex of the arguments as canonical JSON (keys sorted, no whitespace, UTF-8)."""
    return hashlib.sha256(msgspec.json.encode(arguments, order="sorted")).hexdigest()


def encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode({"before": entry_id})).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        before = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["before"]
        if not isinstance(before, int) or isinstance(before, bool):
            raise TypeError
    except Exception as exc:
        raise ProblemError(400, "Invalid cursor", detail="Pass back a next_cursor value unchanged.") from exc
    return before


class AuditLog:
    def __init__(self, database: Database, *, retention_days: int) -> None:
        self.database = database
        self.retention_days = retention_days

    async def start(self, principal: Principal, tool: str, upstream: str | None, digest: str) -> int:
        """Write the ``pending`` row of a call about to be forwarded; raises if it cannot be written."""
        async with self.database.connection() as conn:
            entry_id: int = await conn.fetchval(
                "INSERT INTO tool_call_audit (subject, principal_kind, tool, upstream, arguments_sha256, outcome, "
                "request_id) VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING id",
                principal.subject,
                principal.kind,
                tool,
                upstream,
                digest,
                request_id_var.get(),
            )
        return entry_id

    async def finish(
        self,
        entry_id: int,
        principal: Principal,
        tool: str,
        upstream: str | None,
        digest: str,
        outcome: Outcome,
        latency: float,
    ) -> None:
        """Record how the call ended. The JSON line is written first: it survives a database outage."""
        self._log(principal, tool, upstream, digest, outcome, latency)
        try:
            async with self.database.connection() as conn:
                await conn.execute(
                    "UPDATE tool_call_audit SET outcome = $2, latency_ms = $3 WHERE id = $1",
                    entry_id,
                    outcome,
                    latency * 1000,
                )
        except DatabaseUnavailable as exc:
            logger.warning("audit row %d stays pending: %s", entry_id, exc)

    async def refused(
        self, principal: Principal, tool: str, upstream: str | None, digest: str, outcome: Outcome, latency: float
    ) -> None:
        """One finished row for a call the policy stopped before any upstream was contacted."""
        self._log(principal, tool, upstream, digest, outcome, latency)
        async with self.database.connection() as conn:
            await conn.execute(
                "INSERT INTO tool_call_audit (subject, principal_kind, tool, upstream, arguments_sha256, outcome, "
                "latency_ms, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                principal.subject,
                principal.kind,
                tool,
                upstream,
                digest,
                outcome,
                latency * 1000,
                request_id_var.get(),
            )

    def _log(
        self, principal: Principal, tool: str, upstream: str | None, digest: str, outcome: Outcome, latency: float
    ) -> None:
        logger.info(
            "tool call",
            extra={
                "audit": "call_tool",
                "subject": principal.subject,
                "principal_kind": principal.kind,
                "tool": tool,
                "upstream": upstream,
                "arguments_sha256": digest,
                "outcome": outcome,
                "latency_ms": round(latency * 1000, 3),
            },
        )

    async def page(
        self,
        *,
        subject: str | None,
        tool: str | None,
        outcome: str | None,
        since: datetime | None,
        until: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> AuditPage:
        """Entries matching every given filter, newest first, ``limit`` at a time (keyset on id)."""
        before = decode_cursor(cursor) if cursor else None
        async with self.database.connection() as conn:
            rows = await conn.fetch(
                """SELECT id, at, subject, principal_kind, tool, upstream, arguments_sha256, outcome, latency_ms,
                          request_id
                   FROM tool_call_audit
                   WHERE ($1::text IS NULL OR subject = $1) AND ($2::text IS NULL OR tool = $2)
                     AND ($3::text IS NULL OR outcome = $3) AND ($4::timestamptz IS NULL OR at >= $4)
                     AND ($5::timestamptz IS NULL OR at < $5) AND ($6::bigint IS NULL OR id < $6)
                   ORDER BY id DESC LIMIT $7""",
                subject,
                tool,
                outcome,
                since,
                until,
                before,
                limit + 1,
            )
        entries = [AuditEntry(**dict(row)) for row in rows[:limit]]
        return AuditPage(entries=entries, next_cursor=encode_cursor(entries[-1].id) if len(rows) > limit else None)

    async def sweep(self) -> int:
        """Delete rows past the retention period, if no other replica is; returns how many."""
        deleted = 0
        async with self.database.connection() as conn, try_advisory_lock(conn, "registry:audit-sweep") as held:
            while held:
                done: int = await conn.fetchval(
                    """WITH old AS (SELECT id FROM tool_call_audit
                                    WHERE at < now() - make_interval(days => $1) LIMIT $2)
                       , gone AS (DELETE FROM tool_call_audit a USING old WHERE a.id = old.id RETURNING 1)
                       SELECT count(*) FROM gone""",
                    self.retention_days,
                    SWEEP_BATCH,
                )
                deleted += done
                if done < SWEEP_BATCH:
                    break
        return deleted

    async def run(self) -> None:
        """Sweep at start-up and then every hour, on every replica (the lock picks one)."""
        while True:
            try:
                if deleted := await self.sweep():
                    logger.info("audit sweep deleted %d rows older than %d days", deleted, self.retention_days)
            except DatabaseUnavailable as exc:
                logger.warning("audit sweep skipped: %s", exc)
            except Exception:
                logger.exception("audit sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
