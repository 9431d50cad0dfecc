"""Upstream MCP servers: register them, import their tools, keep them in sync, and proxy calls.

Every outbound connection goes through ``connect``, which checks the URL's host against
``UPSTREAM_ALLOWED_HOSTS`` first (an empty list allows nothing), and uses the official SDK client,
which follows a redirect only when it stays on the same origin. Credentials are never stored: a
server names the environment variable holding its bearer token, read at connection time.

Imported tools are named ``server.tool``. A tool that vanished upstream is marked ``deprecated``
(out of search and listings' default view, still readable; it comes back as ``active`` if it
reappears), leaving ``deleted`` to mean "an administrator removed it" — which sync respects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg
import httpx2
import jsonschema
import msgspec
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

from platform_common.db import Database, DatabaseUnavailable, advisory_key
from platform_common.problems import ProblemError
from tool_registry import catalogue, observability
from tool_registry.indexer import Indexer
from tool_registry.models import Server, ServerIn, SyncResult, ToolAnnotations, ToolIn

logger = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
SYNC_TIMEOUT_SECONDS = 60.0
# The largest upstream result passed back to the caller (serialised JSON).
MAX_RESULT_BYTES = 1_048_576
MAX_PAGES = 100
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class UpstreamError(Exception):
    """An upstream server could not be reached or misbehaved; the message is safe to show."""


class CallResult(msgspec.Struct):
    """An upstream tool's result, passed through."""

    server: str
    tool: str
    is_error: bool
    content: list[dict[str, Any]]
    structured_content: Any = None


def host_allowed(url: str, allowed: Sequence[str]) -> bool:
    """``allowed`` holds exact hosts or ``*.suffix`` patterns; an empty list allows nothing."""
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:  # e.g. "http://a]": not a URL at all
        return False
    if not host:
        return False
    for pattern in (p.lower().strip() for p in allowed):
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern[2:]:
            return True
        if host == pattern:
            return True
    return False


def namespaced(server: str, tool: str) -> str:
    """``server.tool``, with characters the catalogue does not allow replaced, within 128."""
    return f"{server}.{_INVALID_NAME_CHARS.sub('_', tool)}"[:128]


def upstream_tool(server: str, tool: types.Tool) -> ToolIn:
    """The catalogue entry for an upstream tool; raises ``msgspec.ValidationError`` if it cannot be one."""
    annotations = None
    if tool.annotations is not None:
        hints = tool.annotations.model_dump(by_alias=True, exclude_none=True)
        annotations = msgspec.convert({k: v for k, v in hints.items() if k in _ANNOTATION_KEYS}, ToolAnnotations)
    raw = {
        "name": namespaced(server, tool.name),
        "title": (tool.title or (tool.annotations.title if tool.annotations else None) or "")[:256],
        "description": (tool.description or "")[:4096],
        "category": server,
        "tags": [server],
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "annotations": msgspec.to_builtins(annotations) if annotations else None,
    }
    return msgspec.convert(raw, ToolIn)


_ANNOTATION_KEYS = {"title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}


def row_to_server(row: asyncpg.Record) -> Server:
    return Server(
        name=row["name"],
        url=row["url"],
        auth_env=row["auth_env"],
        created_at=row["created_at"],
        last_sync_at=row["last_sync_at"],
        last_sync_error=row["last_sync_error"],
        tool_count=row["tool_count"],
    )


class Federation:
    def __init__(
        self,
        database: Database,
        indexer: Indexer,
        *,
        allowed_hosts: Sequence[str],
        interval: float,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.database = database
        self.indexer = indexer
        self.allowed_hosts = list(allowed_hosts)
        self.interval = interval
        self.environ = environ

    def check_url(self, url: str) -> None:
        try:
            urlsplit(url).hostname  # noqa: B018 (parsing is the check)
        except ValueError as exc:
            raise ProblemError(422, "Invalid server URL", detail=f"{url!r} is not a valid URL: {exc}") from exc
        if not self.allowed_hosts:
            raise ProblemError(
                403,
                "Upstream servers disabled",
                detail="UPSTREAM_ALLOWED_HOSTS is empty, so the registry may not contact any upstream server.",
            )
        if not host_allowed(url, self.allowed_hosts):
            raise ProblemError(
                403,
                "Upstream host not allowed",
                detail=f"The host of {url} is not on UPSTREAM_ALLOWED_HOSTS.",
            )

    # --- registry of servers -------------------------------------------------------------------

    async def register(self, server: ServerIn) -> Server:
        self.check_url(server.url)
        try:
            async with self.database.connection() as conn:
                row = await conn.fetchrow(
                    "INSERT INTO upstream_servers (name, url, auth_env) VALUES ($1, $2, $3) RETURNING *",
                    server.name,
                    server.url,
                    server.auth_env,
                )
        except asyncpg.UniqueViolationError as exc:
            raise ProblemError(409, "Server exists", detail=f"A server named '{server.name}' exists.") from exc
        return row_to_server(row)

    async def servers(self, conn: asyncpg.Connection) -> list[Server]:
        return [row_to_server(r) for r in await conn.fetch("SELECT * FROM upstream_servers ORDER BY name")]

    async def server(self, conn: asyncpg.Connection, name: str) -> Server:
        row = await conn.fetchrow("SELECT * FROM upstream_servers WHERE name = $1", name)
        if row is None:
            raise ProblemError(404, "Server not found", detail=f"No upstream server named '{name}'.")
        return row_to_server(row)

    async def unregister(self, name: str, *, actor: str) -> None:
        """Forget the server; its tools are soft-deleted (their history stays)."""
        async with self.database.connection() as conn, conn.transaction():
            await self.server(conn, name)
            for row in await conn.fetch("SELECT name FROM tools WHERE source = $1 AND status <> 'deleted'", name):
                await catalogue.soft_delete(conn, row["name"], actor=actor)
            await conn.execute("DELETE FROM upstream_servers WHERE name = $1", name)

    # --- talking to upstreams ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connect(self, server: Server, seconds: float) -> AsyncIterator[Client]:
        """An SDK client session to ``server`` (allowlist checked now: the list may have changed)."""
        self.check_url(server.url)
        headers = {}
        if server.auth_env:
            token = self.environ.get(server.auth_env)
            if not token:
                raise UpstreamError(f"environment variable {server.auth_env} (the server's credential) is not set")
            headers["Authorization"] = f"Bearer {token}"
        http = httpx2.AsyncClient(headers=headers, timeout=seconds, follow_redirects=False)
        async with http:
            transport = streamable_http_client(server.url, http_client=http, terminate_on_close=False)
            async with Client(transport, mode="auto", read_timeout_seconds=seconds, cache=None) as client:
                yield client

    async def _list_upstream(self, server: Server) -> list[types.Tool]:
        tools: list[types.Tool] = []
        try:
            with anyio.fail_after(SYNC_TIMEOUT_SECONDS):
                async with self.connect(server, SYNC_TIMEOUT_SECONDS) as client:
                    cursor: str | None = None
                    for _ in range(MAX_PAGES):
                        page = await client.list_tools(cursor=cursor)
                        tools.extend(page.tools)
                        cursor = page.next_cursor
                        if not cursor:
                            break
        except (UpstreamError, ProblemError):
            raise
        except Exception as exc:
            raise UpstreamError(f"listing tools failed: {_describe(exc)}") from exc
        return tools

    async def sync(self, name: str, *, actor: str | None = None) -> SyncResult:
        """Import the server's tools: create new ones, update changed ones, deprecate vanished ones."""
        actor = actor or f"sync:{name}"
        async with self.database.connection() as conn:
            server = await self.server(conn, name)
        try:
            upstream = await self._list_upstream(server)
        except (UpstreamError, ProblemError) as exc:
            await self._record_failure(name, str(exc))
            if isinstance(exc, ProblemError):
                raise
            raise ProblemError(502, "Upstream sync failed", detail=str(exc)) from exc
        result = await self._apply(server, upstream, actor)
        observability.UPSTREAM_LAST_SYNC_SUCCESS.labels(name).set(time.time())
        self.indexer.notify()
        return result

    async def _apply(self, server: Server, upstream: list[types.Tool], actor: str) -> SyncResult:
        created = updated = unchanged = deactivated = 0
        async with self.database.connection() as conn, conn.transaction():
            existing = {
                r["name"]: r
                for r in await conn.fetch(
                    f"SELECT t.id, {catalogue.TOOL_COLUMNS} FROM tools t WHERE t.source = $1",  # noqa: S608
                    server.name,
                )
            }
            seen: set[str] = set()
            for tool in upstream:
                try:
                    item = upstream_tool(server.name, tool)
                    catalogue.check_tool(item)
                except (msgspec.ValidationError, ProblemError) as exc:
                    logger.warning("skipping upstream tool %s.%s: %s", server.name, tool.name, exc)
                    continue
                if item.name in seen:
                    continue
                seen.add(item.name)
                current = existing.get(item.name)
                if current is None:
                    await catalogue.create(
                        conn, item, actor=actor, source=server.name, upstream_name=tool.name, operation="sync"
                    )
                    created += 1
                    continue
                stored = catalogue.row_to_tool(current)
                if stored.status == "deleted":
                    unchanged += 1  # an administrator removed it: sync does not bring it back
                    continue
                # Keep what curators added locally (examples, tags, category, version).
                item = msgspec.structs.replace(
                    item, examples=stored.examples, tags=stored.tags, category=stored.category, version=stored.version
                )
                if item == catalogue.tool_in(stored) and stored.status == "active":
                    unchanged += 1
                    continue
                await catalogue.replace(conn, item.name, item, actor=actor, operation="sync")
                updated += 1
            for tool_name, row in existing.items():
                if tool_name not in seen and row["status"] == "active":
                    await catalogue.replace(
                        conn,
                        tool_name,
                        msgspec.structs.replace(catalogue.tool_in(catalogue.row_to_tool(row)), status="deprecated"),
                        actor=actor,
                        operation="sync",
                    )
                    deactivated += 1
            await conn.execute(
                "UPDATE upstream_servers SET last_sync_at = now(), last_sync_error = NULL, tool_count = $2 "
                "WHERE name = $1",
                server.name,
                len(seen),
            )
        return SyncResult(
            server=server.name, created=created, updated=updated, unchanged=unchanged, deactivated=deactivated
        )

    async def _record_failure(self, name: str, message: str) -> None:
        observability.UPSTREAM_SYNC_FAILURES.labels(name).inc()
        logger.warning("sync of upstream %s failed: %s", name, message)
        with contextlib.suppress(DatabaseUnavailable):
            async with self.database.connection() as conn:
                await conn.execute(
                    "UPDATE upstream_servers SET last_sync_error = $2 WHERE name = $1", name, message[:1000]
                )

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> CallResult:
        """Validate ``arguments`` against the tool's input schema, then call it on its upstream."""
        async with self.database.connection() as conn:
            row = await conn.fetchrow(
                "SELECT name, status, source, upstream_name, input_schema FROM tools WHERE name = $1", tool_name
            )
            if row is None or row["status"] == "deleted":
                raise UpstreamError(f"No tool named '{tool_name}' in the registry.")
            if row["source"] == "manual" or row["upstream_name"] is None:
                raise UpstreamError(f"Tool '{tool_name}' is catalogued only: it has no upstream server to call.")
            server_row = await conn.fetchrow("SELECT * FROM upstream_servers WHERE name = $1", row["source"])
        if server_row is None:
            raise UpstreamError(f"The upstream server of '{tool_name}' is no longer registered.")
        errors = sorted(
            jsonschema.Draft202012Validator(row["input_schema"]).iter_errors(arguments), key=lambda e: list(e.path)
        )
        if errors:
            details = "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:10])
            raise UpstreamError(f"Invalid arguments for '{tool_name}': {details}")
        server = row_to_server(server_row)
        try:
            with anyio.fail_after(CALL_TIMEOUT_SECONDS):
                async with self.connect(server, CALL_TIMEOUT_SECONDS) as client:
                    result = await client.call_tool(row["upstream_name"], arguments)
        except TimeoutError as exc:
            raise UpstreamError(f"'{tool_name}' did not answer within {CALL_TIMEOUT_SECONDS:.0f} s") from exc
        except (UpstreamError, ProblemError):
            raise
        except Exception as exc:
            raise UpstreamError(f"calling '{tool_name}' upstream failed: {_describe(exc)}") from exc
        content = [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]
        passed = CallResult(
            server=server.name,
            tool=row["upstream_name"],
            is_error=result.is_error,
            content=content,
            structured_content=result.structured_content,
        )
        if len(msgspec.json.encode(passed)) > MAX_RESULT_BYTES:
            raise UpstreamError(f"'{tool_name}' returned more than {MAX_RESULT_BYTES} bytes; result dropped")
        return passed

    # --- schedule ------------------------------------------------------------------------------

    async def sync_due(self) -> int:
        """Sync every server not synced within the interval, if this replica holds the sync lock."""
        done = 0
        async with self.database.connection() as conn:
            key = advisory_key("registry:upstream-sync")
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                return 0
            try:
                names = [
                    r["name"]
                    for r in await conn.fetch(
                        "SELECT name FROM upstream_servers WHERE last_sync_at IS NULL "
                        "OR last_sync_at < now() - make_interval(secs => $1) ORDER BY name",
                        self.interval,
                    )
                ]
                for name in names:
                    with contextlib.suppress(ProblemError):
                        await self.sync(name)
                        done += 1
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
        return done

    async def run(self) -> None:
        """Every replica runs this loop; the advisory lock makes one of them do the work."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sync_due()
            except DatabaseUnavailable as exc:
                logger.warning("scheduled upstream sync skipped: %s", exc)
            except Exception:
                logger.exception("scheduled upstream sync failed")


def _describe(exc: BaseException) -> str:
    """A short, secret-free description (exception groups from anyio are unwrapped)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
