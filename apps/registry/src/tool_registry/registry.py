"""The registry's operations, shared by the REST API, the MCP tools and the CLI.

It owns the two database pools: writes, and reads that must see them, go to ``DATABASE_URL``;
other reads and searches go to ``DATABASE_READ_URL`` when set (a streaming replica may lag by
a moment, which search tolerates). Write paths return what they wrote from the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from platform_common.auth import Principal
from platform_common.db import Database
from tool_registry import catalogue, observability, search
from tool_registry.audit import AuditLog, Outcome, arguments_digest
from tool_registry.config import RegistrySettings
from tool_registry.egress import Resolver
from tool_registry.embeddings import Embedder, EmbeddingError, QueryCache, build_embedder
from tool_registry.federation import CallResult, Federation, UpstreamError
from tool_registry.indexer import Indexer, index_name
from tool_registry.models import (
    Categories,
    ImportResult,
    SearchRequest,
    SearchResponse,
    Stats,
    Tool,
    ToolImport,
    ToolIn,
    ToolPatch,
)
from tool_registry.policy import Access, PolicyStore

# What call_tool answers for a tool that does not exist or that the caller does not see: the same words.
NOT_FOUND = "No tool named '{name}' in the registry."
DENIED = "The registry's policy does not let you call '{name}'."
DENIED_DESTRUCTIVE = (
    "'{name}' is marked destructive (destructiveHint): calling it needs a call_destructive grant in the "
    "registry's policy."
)
# How long the category list in find_tools' description may be stale.
CATEGORY_CACHE_SECONDS = 30.0
# Category lists cached per distinct view (set of visible-name patterns); more views than this start over.
CATEGORY_CACHE_VIEWS = 256
# The view of every tool: the category sizes that choose a filtered search's scan.
EVERY_TOOL = Access(see=frozenset({"*"}), call=frozenset(), call_destructive=frozenset())


@dataclass
class Registry:
    settings: RegistrySettings
    primary: Database
    replica: Database
    embedder: Embedder
    indexer: Indexer
    federation: Federation
    cache: QueryCache
    policy: PolicyStore
    audit: AuditLog
    _categories: dict[tuple[str, ...] | None, tuple[float, Categories]] = field(default_factory=dict, init=False)

    @classmethod
    def build(cls, settings: RegistrySettings, *, resolver: Resolver | None = None) -> Registry:
        """``resolver`` replaces the system's DNS for upstream hosts (tests pointing names at loopback)."""
        primary = Database(
            settings.database_url,
            max_size=settings.database_pool_max,
            timeout=settings.database_timeout_seconds,
            server_settings=search.SERVER_SETTINGS,
        )
        replica = (
            Database(
                settings.database_read_url,
                max_size=settings.database_pool_max,
                timeout=settings.database_timeout_seconds,
                server_settings=search.SERVER_SETTINGS,
            )
            if settings.database_read_url
            else primary
        )
        embedder = build_embedder(settings)
        indexer = Indexer(primary, embedder)
        federation = Federation(
            primary,
            indexer,
            allowed_hosts=settings.upstream_allowed_hosts,
            allowed_ports=settings.upstream_allowed_ports,
            interval=settings.upstream_sync_interval_seconds,
            max_tools=settings.upstream_max_tools,
            resolver=resolver,
        )
        # Loaded here, so an invalid POLICY_FILE stops the app before it serves anything.
        policy = PolicyStore(settings.policy_file, settings.policy_reload_seconds)
        return cls(
            settings,
            primary,
            replica,
            embedder,
            indexer,
            federation,
            QueryCache(enabled=settings.enable_cache),
            policy,
            AuditLog(primary, retention_days=settings.audit_retention_days),
        )

    def reader(self, consistent: bool = False) -> Database:
        """The pool for a read; ``consistent`` reads must see this replica's own latest writes."""
        return self.primary if consistent else self.replica

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Prepare the model's index, then run the indexer and the sync scheduler in the background."""
        await self.indexer.prepare()
        tasks = [
            asyncio.create_task(self.indexer.run()),
            asyncio.create_task(self.federation.run()),
            asyncio.create_task(self.policy.run()),
            asyncio.create_task(self.audit.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.embedder.close()
            await self.primary.close()
            if self.replica is not self.primary:
                await self.replica.close()

    # --- writes --------------------------------------------------------------------------------

    async def create(self, item: ToolIn, actor: str) -> Tool:
        async with self.primary.connection() as conn:
            tool_id, tool = await catalogue.create(conn, item, actor=actor)
        await self.indexer.embed_after_write(tool_id)
        return tool

    async def replace(self, name: str, item: ToolIn, actor: str) -> Tool:
        async with self.primary.connection() as conn:
            tool_id, tool = await catalogue.replace(conn, name, item, actor=actor)
        await self.indexer.embed_after_write(tool_id)
        return tool

    async def patch(self, name: str, change: ToolPatch, actor: str) -> Tool:
        async with self.primary.connection() as conn:
            tool_id, tool = await catalogue.patch(conn, name, change, actor=actor)
        await self.indexer.embed_after_write(tool_id)
        return tool

    async def delete(self, name: str, actor: str) -> None:
        async with self.primary.connection() as conn:
            await catalogue.soft_delete(conn, name, actor=actor)

    async def import_tools(self, items: Sequence[ToolImport], actor: str) -> ImportResult:
        async with self.primary.connection() as conn:
            result = await catalogue.import_tools(
                conn,
                items,
                actor=actor,
                model=self.embedder.model,
                dimension=self.embedder.dimension,
                index=index_name(self.embedder.model, self.embedder.dimension),
            )
        if result.embeddings_pending:
            self.indexer.notify()
        return result

    # --- the gateway ----------------------------------------------------------------------------

    async def call_tool(self, principal: Principal, name: str, arguments: dict[str, Any]) -> CallResult:
        """Call ``name`` upstream for ``principal`` if the policy lets it; every attempt is audited.

        A tool the principal does not see fails exactly like a tool that does not exist, so calls
        cannot probe the catalogue. A visible tool without the right to call it (or a destructive one
        without a ``call_destructive`` grant) is refused with the reason: the caller knows it exists.
        """
        started = time.perf_counter()
        access = self.policy.access(principal)
        digest = arguments_digest(arguments)
        async with self.primary.connection() as conn:
            target = await catalogue.call_target(conn, name)
        upstream = target[0] if target and target[0] != "manual" else None
        refusal: tuple[Outcome, str] | None = None
        if target is None or not access.sees(name):
            upstream, refusal = None, ("not_found", NOT_FOUND.format(name=name))
        elif not access.may_call(name, destructive=target[1]):
            refusal = ("denied", (DENIED_DESTRUCTIVE if target[1] else DENIED).format(name=name))
        if refusal is not None:
            await self.audit.refused(principal, name, upstream, digest, refusal[0], time.perf_counter() - started)
            raise UpstreamError(refusal[1])
        entry = await self.audit.start(principal, name, upstream, digest)
        outcome: Outcome = "error"
        try:
            result = await self.federation.call(name, arguments)
            outcome = "tool_error" if result.is_error else "ok"
            return result
        finally:
            # Shielded: a caller that goes away cancels the call (anyio cancels every later await in
            # its scope), but the row must still say how it ended; the write is bounded by the pool timeout.
            with anyio.CancelScope(shield=True):
                await self.audit.finish(
                    entry, principal, name, upstream, digest, outcome, time.perf_counter() - started
                )

    # --- reads ---------------------------------------------------------------------------------

    async def search(self, request: SearchRequest, access: Access, *, consistent: bool = False) -> SearchResponse:
        """Search the tools ``access`` sees in ``request.mode``; without a usable vector model, hybrid
        and vector fall back to text."""
        started = time.perf_counter()
        mode: search.Mode = request.mode
        model = await self.indexer.search_model() if mode != "text" else None
        vector = None
        if model is not None:
            try:
                vector = await self.cache.embed_query(model.embedder, request.query)
            except EmbeddingError:
                model = None  # the provider is down: full text still answers
        if model is None:
            mode = "text"
        # Before taking a connection: refreshing the category sizes takes one of its own.
        small = (
            request.category is not None and await self._category_size(request.category) <= search.EXACT_SCAN_MAX_ROWS
        )
        async with self.reader(consistent).connection() as conn:
            found = await search.candidates(
                conn,
                query=request.query,
                vector=vector,
                model=model.model if model else None,
                dimension=model.dimension if model else 1,
                mode=mode,
                filters=search.Filters(request.category, request.tags, access.like_patterns()),
                limit=request.limit,
                exact=small,
            )
        results = search.fuse(found, mode, limit=request.limit, min_score=request.min_score)
        observability.SEARCH_DURATION.labels(request.mode).observe(time.perf_counter() - started)
        if not results:
            observability.SEARCH_ZERO_RESULTS.labels(request.mode).inc()
        return SearchResponse(results=results, mode=mode, model=model.model if model else None)

    async def get(self, name: str, access: Access, *, consistent: bool = False) -> Tool | None:
        """The tool, or ``None`` when it does not exist or ``access`` does not see it (indistinguishable)."""
        if not access.sees(name):
            return None
        async with self.reader(consistent).connection() as conn:
            return await catalogue.get(conn, name)

    async def _category_size(self, category: str) -> int:
        """Active tools in ``category`` over the whole catalogue, at most 30 s old (0: none): it chooses
        between the exact and the HNSW scan of a filtered search, so an estimate is enough."""
        counts = await self.categories(EVERY_TOOL, cached=True)
        return next((c.tools for c in counts.categories if c.name == category), 0)

    async def categories(self, access: Access, *, cached: bool = False) -> Categories:
        """Categories of the tools ``access`` sees; ``cached`` answers may be 30 s old."""
        now = time.monotonic()
        names = access.like_patterns()
        view = None if names is None else tuple(names)
        hit = self._categories.get(view)
        if cached and hit and now - hit[0] < CATEGORY_CACHE_SECONDS:
            return hit[1]
        async with self.replica.connection() as conn:
            result = await catalogue.categories(conn, names)
        if len(self._categories) >= CATEGORY_CACHE_VIEWS:
            self._categories.clear()
        self._categories[view] = (now, result)
        return result

    async def stats(self, access: Access) -> Stats:
        """Catalogue figures over the tools ``access`` sees (the tool gauges only from a full view)."""
        model = await self.indexer.search_model()
        names = access.like_patterns()
        async with self.replica.connection() as conn:
            result = await catalogue.stats(
                conn, configured_model=self.embedder.model, search_model=model.model if model else None, names=names
            )
        if names is None:
            for status, count in result.by_status.items():
                observability.TOOLS.labels(status).set(count)
        return result
