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

from platform_common.db import Database
from tool_registry import catalogue, observability, search
from tool_registry.config import RegistrySettings
from tool_registry.egress import Resolver
from tool_registry.embeddings import Embedder, EmbeddingError, QueryCache, build_embedder
from tool_registry.federation import Federation
from tool_registry.indexer import Indexer
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

# How long the category list in find_tools' description may be stale.
CATEGORY_CACHE_SECONDS = 30.0


@dataclass
class Registry:
    settings: RegistrySettings
    primary: Database
    replica: Database
    embedder: Embedder
    indexer: Indexer
    federation: Federation
    cache: QueryCache
    _categories: tuple[float, Categories] | None = field(default=None, init=False)

    @classmethod
    def build(cls, settings: RegistrySettings, *, resolver: Resolver | None = None) -> Registry:
        """``resolver`` replaces the system's DNS for upstream hosts (tests pointing names at loopback)."""
        primary = Database(
            settings.database_url, max_size=settings.database_pool_max, timeout=settings.database_timeout_seconds
        )
        replica = (
            Database(
                settings.database_read_url,
                max_size=settings.database_pool_max,
                timeout=settings.database_timeout_seconds,
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
        return cls(settings, primary, replica, embedder, indexer, federation, QueryCache(enabled=settings.enable_cache))

    def reader(self, consistent: bool = False) -> Database:
        """The pool for a read; ``consistent`` reads must see this replica's own latest writes."""
        return self.primary if consistent else self.replica

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Prepare the model's index, then run the indexer and the sync scheduler in the background."""
        await self.indexer.prepare()
        tasks = [asyncio.create_task(self.indexer.run()), asyncio.create_task(self.federation.run())]
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
                conn, items, actor=actor, model=self.embedder.model, dimension=self.embedder.dimension
            )
        if result.embeddings_pending:
            self.indexer.notify()
        return result

    # --- reads ---------------------------------------------------------------------------------

    async def search(self, request: SearchRequest, *, consistent: bool = False) -> SearchResponse:
        """Search in ``request.mode``; without a usable vector model, hybrid and vector fall back to text."""
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
        async with self.reader(consistent).connection() as conn:
            found = await search.candidates(
                conn,
                query=request.query,
                vector=vector,
                model=model.model if model else None,
                dimension=model.dimension if model else 1,
                mode=mode,
                filters=search.Filters(request.category, request.tags),
                limit=request.limit,
            )
        results = search.fuse(found, mode, limit=request.limit, min_score=request.min_score)
        observability.SEARCH_DURATION.labels(request.mode).observe(time.perf_counter() - started)
        if not results:
            observability.SEARCH_ZERO_RESULTS.labels(request.mode).inc()
        return SearchResponse(results=results, mode=mode, model=model.model if model else None)

    async def categories(self, *, cached: bool = False) -> Categories:
        now = time.monotonic()
        if cached and self._categories and now - self._categories[0] < CATEGORY_CACHE_SECONDS:
            return self._categories[1]
        async with self.replica.connection() as conn:
            result = await catalogue.categories(conn)
        self._categories = (now, result)
        return result

    async def stats(self) -> Stats:
        model = await self.indexer.search_model()
        async with self.replica.connection() as conn:
            result = await catalogue.stats(
                conn, configured_model=self.embedder.model, search_model=model.model if model else None
            )
        for status, count in result.by_status.items():
            observability.TOOLS.labels(status).set(count)
        return result
