"""Upstream MCP servers: register them, import their tools, keep them in sync, and proxy calls.

Every outbound connection goes through ``connect``: the URL's host and port are checked against
``UPSTREAM_ALLOWED_HOSTS`` and ``UPSTREAM_ALLOWED_PORTS`` (an empty host list allows nothing), the
name is resolved and every address checked, and the connection is pinned to the checked address
with every response capped while it is read (``egress``). The official SDK client follows a
redirect only when it stays on the same origin. Credentials are never stored: a server names a
credential ``<NAME>``, whose bearer token is read from ``UPSTREAM_CREDENTIAL_<NAME>`` at connection
time and sent only over https:// (or plain http to loopback with ``allow_insecure_http``).

Imported tools are named ``server.tool`` and pinned: sync records the sha256 digest of what the
upstream declares (``tool_digest``); a new tool, or a change of an approved one, waits in
``upstream_pending`` for an admin unless the server is ``auto_approve`` (``pinning``). A tool that
vanished upstream is marked ``deprecated`` (out of search and listings' default view, still
readable; it comes back as ``active`` if it reappears), leaving ``deleted`` to mean "an
administrator removed it" — which sync respects.
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

import anyio
import asyncpg
import httpx2
import msgspec
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

from platform_common.db import Database, DatabaseUnavailable, try_advisory_lock
from platform_common.problems import ProblemError
from tool_registry import catalogue, observability, pinning
from tool_registry.egress import (
    EgressPolicy,
    EgressRefused,
    PinnedTransport,
    Resolver,
    Target,
    resolve_target,
    split_origin,
    system_resolver,
)
from tool_registry.indexer import Indexer
from tool_registry.models import Server, ServerIn, SyncResult, Tool, ToolAnnotations, ToolIn
from tool_registry.validation import argument_errors

logger = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
SYNC_TIMEOUT_SECONDS = 60.0
# The largest upstream result passed back to the caller (serialised JSON).
MAX_RESULT_BYTES = 1_048_576
# The most bytes read of any one upstream HTTP response, counted while it streams in: a result's
# cap plus its JSON-RPC envelope and duplicated structured content, or one page of tools/list.
MAX_RESPONSE_BYTES = 4 * MAX_RESULT_BYTES
# Credentials come only from variables with this prefix, never from the registry's own settings.
CREDENTIAL_PREFIX = "UPSTREAM_CREDENTIAL_"
# What read-only callers see of a failure that happened on the network (no port states).
GENERIC_FAILURE = "the upstream did not answer as an MCP server (details in the registry log)"
MAX_PAGES = 100
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class UpstreamError(Exception):
    """An upstream server could not be reached or misbehaved; the message is safe to show to callers
    allowed to use the server, ``public`` to anyone who may read the server's record."""

    def __init__(self, message: str, *, public: str = GENERIC_FAILURE) -> None:
        super().__init__(message)
        self.public = public


class CallResult(msgspec.Struct):
    """An upstream tool's result, passed through."""

    server: str
    tool: str
    is_error: bool
    content: list[dict[str, Any]]
    structured_content: Any = None


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
        credential=row["credential"],
        allow_insecure_http=row["allow_insecure_http"],
        auto_approve=row["auto_approve"],
        on_change=row["on_change"],
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
        allowed_ports: Sequence[str] = ("443", "80"),
        interval: float,
        max_tools: int = 1000,
        environ: Mapping[str, str] = os.environ,
        resolver: Resolver | None = None,
    ) -> None:
        self.database = database
        self.indexer = indexer
        self.policy = EgressPolicy.parse(allowed_hosts, allowed_ports)
        self.interval = interval
        self.max_tools = max_tools
        self.environ = environ
        self.resolver: Resolver = resolver or system_resolver

    async def check_url(self, url: str) -> Target:
        """The checked target of ``url`` (403 when the policy refuses it, 422 when it is no URL)."""
        try:
            split_origin(url)
        except ValueError as exc:
            raise ProblemError(422, "Invalid server URL", detail=f"{url!r} is not a valid URL: {exc}") from exc
        if self.policy.empty:
            raise ProblemError(
                403,
                "Upstream servers disabled",
                detail="UPSTREAM_ALLOWED_HOSTS is empty, so the registry may not contact any upstream server.",
            )
        try:
            return await resolve_target(url, self.policy, self.resolver)
        except EgressRefused as exc:
            raise ProblemError(403, "Upstream host not allowed", detail=f"{url}: {exc}.") from exc

    def _token(self, credential: str) -> str | None:
        """The bearer token of ``credential``, from ``UPSTREAM_CREDENTIAL_<credential>`` only."""
        return self.environ.get(CREDENTIAL_PREFIX + credential) or None

    # --- registry of servers -------------------------------------------------------------------

    async def register(self, server: ServerIn) -> Server:
        if server.auth_env is not None:
            raise ProblemError(
                422,
                "auth_env is no longer accepted",
                detail=f"Credentials are read only from {CREDENTIAL_PREFIX}<NAME> variables: set "
                f"{CREDENTIAL_PREFIX}<NAME> in the registry's environment and register with credential: <NAME>.",
            )
        target = await self.check_url(server.url)
        if server.credential is not None:
            self._check_credential(server, target)
        try:
            async with self.database.connection() as conn:
                row = await conn.fetchrow(
                    "INSERT INTO upstream_servers (name, url, credential, allow_insecure_http, auto_approve, "
                    "on_change) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                    server.name,
                    server.url,
                    server.credential,
                    server.allow_insecure_http,
                    server.auto_approve,
                    server.on_change,
                )
        except asyncpg.UniqueViolationError as exc:
            raise ProblemError(409, "Server exists", detail=f"A server named '{server.name}' exists.") from exc
        _export_failure_series([server.name])
        return row_to_server(row)

    def _check_credential(self, server: ServerIn, target: Target) -> None:
        """422 unless the credential exists and would travel over https (or http to loopback, if allowed)."""
        assert server.credential is not None
        if self._token(server.credential) is None:
            raise ProblemError(
                422,
                "Unknown credential",
                detail=f"No credential named '{server.credential}': the registry has no "
                f"{CREDENTIAL_PREFIX}{server.credential} variable.",
            )
        if problem := _insecure(target, server.allow_insecure_http):
            raise ProblemError(422, "Credential would be sent in clear text", detail=problem)

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
        """An SDK client session to ``server``, pinned to an address checked now (the policy or DNS may
        have changed since registration)."""
        try:
            target = await resolve_target(server.url, self.policy, self.resolver)
        except (EgressRefused, ValueError) as exc:
            raise UpstreamError(f"{exc}", public=f"{exc}") from exc
        headers = {}
        if server.credential:
            if problem := _insecure(target, server.allow_insecure_http):
                raise UpstreamError(problem, public=problem)
            token = self._token(server.credential)
            if token is None:
                message = f"{CREDENTIAL_PREFIX}{server.credential} (the server's credential) is not set"
                raise UpstreamError(message, public=message)
            headers["Authorization"] = f"Bearer {token}"
        http = httpx2.AsyncClient(
            headers=headers,
            timeout=seconds,
            follow_redirects=False,
            trust_env=False,
            transport=PinnedTransport(target, MAX_RESPONSE_BYTES),
        )
        async with http:
            transport = streamable_http_client(server.url, http_client=http, terminate_on_close=False)
            async with Client(transport, mode="auto", read_timeout_seconds=seconds, cache=None) as client:
                yield client

    async def _list_upstream(self, server: Server) -> list[types.Tool]:
        """Every tool the server lists; more than ``max_tools`` is an error (nothing is applied)."""
        tools: list[types.Tool] = []
        try:
            with anyio.fail_after(SYNC_TIMEOUT_SECONDS):
                async with self.connect(server, SYNC_TIMEOUT_SECONDS) as client:
                    cursor: str | None = None
                    for _ in range(MAX_PAGES):
                        page = await client.list_tools(cursor=cursor)
                        tools.extend(page.tools)
                        if len(tools) > self.max_tools:
                            message = f"the server lists more than {self.max_tools} tools (UPSTREAM_MAX_TOOLS)"
                            raise UpstreamError(message, public=message)
                        cursor = page.next_cursor
                        if not cursor:
                            break
        except Exception as exc:
            if isinstance(leaf := _leaf(exc), UpstreamError):
                raise leaf from None  # raised inside the SDK's task group, which wrapped it
            raise UpstreamError(f"listing tools failed: {_describe(exc)}") from exc
        return tools

    async def sync(self, name: str, *, actor: str | None = None) -> SyncResult:
        """Import the server's tools: create new ones, update changed ones, deprecate vanished ones;
        without ``auto_approve``, new and changed tools wait for review instead."""
        actor = actor or f"sync:{name}"
        async with self.database.connection() as conn:
            server = await self.server(conn, name)
        try:
            upstream = await self._list_upstream(server)
        except UpstreamError as exc:
            await self._record_failure(name, str(exc), exc.public)
            raise ProblemError(502, "Upstream sync failed", detail=str(exc)) from exc
        result = await self._apply(server, upstream, actor)
        observability.UPSTREAM_LAST_SYNC_SUCCESS.labels(name).set(time.time())
        self.indexer.notify()
        return result

    async def _apply(self, server: Server, upstream: list[types.Tool], actor: str) -> SyncResult:
        counts = {"created": 0, "updated": 0, "unchanged": 0, "deactivated": 0, "held": 0}
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
                outcome = await self._apply_one(conn, server, item, tool.name, existing.get(item.name), actor)
                counts[outcome] += 1
            for tool_name, row in existing.items():
                if tool_name not in seen and row["status"] == "active":
                    await _set_status(conn, catalogue.row_to_tool(row), "deprecated", actor)
                    counts["deactivated"] += 1
            await pinning.forget_vanished(conn, server.name, seen)
            await conn.execute(
                "UPDATE upstream_servers SET last_sync_at = now(), last_sync_error = NULL, tool_count = $2 "
                "WHERE name = $1",
                server.name,
                len(seen),
            )
        return SyncResult(server=server.name, **counts)

    async def _apply_one(
        self,
        conn: asyncpg.Connection,
        server: Server,
        item: ToolIn,
        upstream_name: str,
        current: asyncpg.Record | None,
        actor: str,
    ) -> str:
        """Apply one listed tool, or hold it for review; returns the SyncResult counter it adds to."""
        stored = catalogue.row_to_tool(current) if current is not None else None
        if stored is not None and stored.status == "deleted":
            return "unchanged"  # an administrator removed it: sync does not bring it back
        digest = pinning.tool_digest(item)
        approved = current["approved_digest"] if current is not None else None
        if stored is not None and approved is None and pinning.tool_digest(catalogue.tool_in(stored)) == digest:
            # Catalogued before pinning, and the upstream still declares what is served: adopt it.
            await pinning.record_digest(conn, stored.name, digest)
            approved = digest
        if digest != approved and not server.auto_approve:
            await pinning.hold(conn, server.name, upstream_name, item, digest)
            if stored is not None and stored.status == "active" and server.on_change == "disable":
                await _set_status(conn, stored, "deprecated", actor)
            return "held"
        await pinning.discard(conn, server.name, upstream_name)
        if stored is not None and digest == approved and stored.status == "active":
            return "unchanged"
        await pinning.write_approved(
            conn, server.name, item, stored, upstream_name, digest, actor=actor, operation="sync"
        )
        return "created" if stored is None else "updated"

    async def _record_failure(self, name: str, message: str, public: str) -> None:
        """Count and log the failure; the server's record keeps only the ``public`` message."""
        observability.UPSTREAM_SYNC_FAILURES.labels(name).inc()
        logger.warning("sync of upstream %s failed: %s", name, message)
        with contextlib.suppress(DatabaseUnavailable):
            async with self.database.connection() as conn:
                await conn.execute(
                    "UPDATE upstream_servers SET last_sync_error = $2 WHERE name = $1", name, public[:1000]
                )

    async def approve(self, server_name: str, upstream_name: str, digest: str, *, actor: str) -> Tool:
        """Serve the pending version ``digest`` of the tool from now on (404/409 when it is not pending)."""
        async with self.database.connection() as conn, conn.transaction():
            await self.server(conn, server_name)
            tool_id, tool = await pinning.approve(conn, server_name, upstream_name, digest, actor=actor)
        await self.indexer.embed_after_write(tool_id)
        return tool

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
            if server_row["on_change"] == "disable" and await pinning.is_pending(
                conn, row["source"], row["upstream_name"]
            ):
                raise UpstreamError(f"'{tool_name}' changed upstream and is disabled until an admin approves it.")
        if errors := argument_errors(row["input_schema"], arguments):
            raise UpstreamError(f"Invalid arguments for '{tool_name}': {'; '.join(errors)}")
        server = row_to_server(server_row)
        try:
            with anyio.fail_after(CALL_TIMEOUT_SECONDS):
                async with self.connect(server, CALL_TIMEOUT_SECONDS) as client:
                    result = await client.call_tool(row["upstream_name"], arguments)
        except TimeoutError as exc:
            raise UpstreamError(f"'{tool_name}' did not answer within {CALL_TIMEOUT_SECONDS:.0f} s") from exc
        except UpstreamError:
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
        async with self.database.connection() as conn, try_advisory_lock(conn, "registry:upstream-sync") as held:
            if not held:
                return 0
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
        return done

    async def run(self) -> None:
        """Every replica runs this loop; the advisory lock makes one of them do the work."""
        while True:
            with contextlib.suppress(DatabaseUnavailable):
                async with self.database.connection() as conn:
                    _export_failure_series([server.name for server in await self.servers(conn)])
            await asyncio.sleep(self.interval)
            try:
                await self.sync_due()
            except DatabaseUnavailable as exc:
                logger.warning("scheduled upstream sync skipped: %s", exc)
            except Exception:
                logger.exception("scheduled upstream sync failed")


def _export_failure_series(names: list[str]) -> None:
    """Create each server's failure counter at 0 ahead of its syncs on this process.

    ``increase()`` needs a sample before the first failure: a series born at 1 shows no increase,
    so RegistryUpstreamSyncFailing would miss a server whose first sync fails.
    """
    for name in names:
        observability.UPSTREAM_SYNC_FAILURES.labels(name)


async def _set_status(conn: asyncpg.Connection, stored: Tool, status: str, actor: str) -> None:
    """Change only the status of a catalogued upstream tool (as sync)."""
    item = msgspec.structs.replace(catalogue.tool_in(stored), status=status)
    await catalogue.replace(conn, stored.name, item, actor=actor, operation="sync")


def _insecure(target: Target, allow_insecure_http: bool) -> str | None:
    """Why a credential may not go to ``target``: only https, or http to loopback when allowed."""
    if target.scheme == "https":
        return None
    if not allow_insecure_http:
        return "the credential would travel over plain http://; use https:// (allow_insecure_http is for loopback)"
    if not target.loopback:
        return "allow_insecure_http applies to loopback hosts only; use https:// for this host"
    return None


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups from anyio's task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """A short, secret-free description (exception groups from anyio are unwrapped)."""
    exc = _leaf(exc)
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
