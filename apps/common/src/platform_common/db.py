"""The asyncpg pool and the migrations runner both apps use.

Migrations are numbered SQL files (``0001_name.sql``) in each app's ``migrations`` package. They run
at start-up (and by ``migrate``) under a PostgreSQL advisory lock, so replicas starting together
apply each file exactly once; each file runs in its own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import asyncpg
import msgspec
from pgvector.asyncpg import register_vector

from platform_common.problems import ProblemError

logger = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# Errors that mean "the database cannot be reached right now" (or this connection is no longer usable),
# as opposed to a bad query. InternalClientError ("another operation is in progress") is a connection
# whose protocol state an outage broke: seen under load while PostgreSQL stopped, it was a 500.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.IdleSessionTimeoutError,
    asyncpg.exceptions.TooManyConnectionsError,
)


# Text PostgreSQL cannot store (a NUL character in text or jsonb): the caller's input, so a 400.
UNSTORABLE_TEXT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)


class UnstorableText(ProblemError):
    def __init__(self) -> None:
        super().__init__(400, "Invalid text", detail="Text values must not contain NUL (\\u0000) characters.")


class DatabaseUnavailable(ProblemError):
    """503 with Retry-After: the request needs the database and it cannot be reached."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "Database unavailable",
            detail="The database cannot be reached; retry shortly.",
            headers={"Retry-After": "5"},
        )


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def try_advisory_lock(conn: asyncpg.Connection, name: str) -> AsyncIterator[bool]:
    """Hold the session advisory lock ``name`` for the block if no other session does; yields whether.

    For work every replica schedules and one should do (sweeps, syncs, catching up embeddings).
    """
    key = advisory_key(name)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
        yield False
        return
    try:
        yield True
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # The vector type exists only once the first migration created the extension.
    if await conn.fetchval("SELECT 1 FROM pg_type WHERE typname = 'vector'"):
        await register_vector(conn)
    await conn.set_type_codec("jsonb", encoder=_json_encode, decoder=_json_decode, schema="pg_catalog")


def _json_encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _json_decode(value: str) -> Any:
    return msgspec.json.decode(value)


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Return ``conn`` to the pool; one that cannot be reset is broken: close it, never raise.

    A release that raises would replace the request's own outcome (its result, or its 503) with a 500.
    """
    try:
        await pool.release(conn)
    except Exception as exc:  # asyncpg raises InternalClientError, InterfaceError, OSError, timeouts here
        # asyncpg has terminated the connection already, which gave its slot back to the pool.
        logger.warning("dropped a database connection that could not be reset: %s", type(exc).__name__)
        with contextlib.suppress(Exception):
            conn.terminate()


class Database:
    """A lazily connected pool. The app starts even when PostgreSQL is down, and heals when it returns."""

    def __init__(
        self, url: str, *, max_size: int = 10, timeout: float = 5.0, server_settings: dict[str, str] | None = None
    ) -> None:
        """``server_settings``: session settings every connection starts with (sent once, at connect)."""
        self.url = url
        self.max_size = max_size
        self.timeout = timeout
        self.server_settings = server_settings
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.url,
                        min_size=0,
                        max_size=self.max_size,
                        init=_init_connection,
                        timeout=self.timeout,
                        command_timeout=self.timeout * 6,
                        max_inactive_connection_lifetime=60,
                        server_settings=self.server_settings,
                    )
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; connection failures become ``DatabaseUnavailable`` (503)."""
        try:
            pool = await self.pool()
            conn = await pool.acquire(timeout=self.timeout)
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable() from exc
        try:
            yield conn
        except CONNECTION_ERRORS as exc:
            # The connection died mid-use (e.g. the server restarted): drop it rather than reset it,
            # or the pool's reset query fails on it and that error replaces this 503.
            with contextlib.suppress(Exception):
                conn.terminate()
            raise DatabaseUnavailable() from exc
        except UNSTORABLE_TEXT_ERRORS as exc:
            raise UnstorableText() from exc
        finally:
            await _release(pool, conn)

    async def ping(self) -> str | None:
        """Readiness: ``None`` when a trivial query succeeds, else the reason it did not."""
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1", timeout=self.timeout)
        except DatabaseUnavailable as exc:
            return f"database unreachable: {type(exc.__cause__).__name__}"
        return None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def connect_when_reachable(url: str, *, wait_seconds: float, connect_timeout: float = 30.0) -> asyncpg.Connection:
    """One connection, retried with exponential backoff (0.5 s doubling to 10 s) while the database cannot be
    reached, for up to ``wait_seconds``; every failed attempt is logged with its reason.

    A first install starts the apps, the migrations Job and PostgreSQL together, and a worker may restart
    while the database is down: waiting here turns that race into a delay instead of a crash loop. Other
    errors (a wrong password, a missing database) are not retried: waiting would not fix them.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.5
    attempt = 1
    while True:
        try:
            return await asyncpg.connect(url, timeout=connect_timeout)
        except CONNECTION_ERRORS as exc:
            remaining = deadline - loop.time()
            if remaining <= 0:
                logger.error(
                    "database unreachable after %d attempts in %.0f s (DATABASE_WAIT_SECONDS): %s: %s",
                    attempt,
                    wait_seconds,
                    type(exc).__name__,
                    exc,
                )
                raise
            pause = min(delay, remaining)
            logger.warning(
                "database unreachable (attempt %d, %s: %s); retrying in %.1f s, giving up in %.0f s",
                attempt,
                type(exc).__name__,
                exc,
                pause,
                remaining,
            )
            await asyncio.sleep(pause)
            delay = min(delay * 2, 10.0)
            attempt += 1


async def migrate(url: str, package: str, *, table: str, wait_seconds: float = 0.0) -> list[str]:
    """Apply the SQL files of ``package`` not yet recorded in ``table``; returns the applied names.

    ``table`` names the bookkeeping table (one per app, so both apps can share one database).
    ``wait_seconds``: how long to wait for an unreachable database first (``connect_when_reachable``).
    """
    if not re.fullmatch(r"[a-z_]+", table):
        raise ValueError(f"invalid migrations table name: {table!r}")
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in resources.files(package).iterdir()
        if _MIGRATION_NAME.match(entry.name)
    )
    applied: list[str] = []
    conn = await connect_when_reachable(url, wait_seconds=wait_seconds)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", advisory_key(f"migrations:{table}"))
        try:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in await conn.fetch(f"SELECT name FROM {table}")}  # noqa: S608
            for name, sql in files:
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(f"INSERT INTO {table} (name) VALUES ($1)", name)  # noqa: S608
                logger.info("applied migration %s", name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", advisory_key(f"migrations:{table}"))
    finally:
        await conn.close()
    return applied
