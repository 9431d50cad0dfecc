"""Keeps the configured model's vectors in step with the catalogue, and picks the model search uses.

Writes embed their tool inline (best effort, so a new tool is searchable at once); this
background loop catches up on everything else: bulk imports, upstream syncs, failed inline
embeddings and, after ``EMBEDDING_MODEL`` changes, the whole catalogue. Only one replica catches
up at a time (PostgreSQL advisory lock). Search keeps using the previous model's vectors until the
new model covers every non-deleted tool, then switches: no downtime, no half-embedded results.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import numpy as np

from platform_common.db import Database, DatabaseUnavailable, advisory_key, try_advisory_lock
from tool_registry import catalogue, observability
from tool_registry.embeddings import Embedder, EmbeddingError, Vectors

logger = logging.getLogger(__name__)

BATCH_TOOLS = 64
# How long a replica trusts its idea of which model is searchable.
MODEL_CACHE_SECONDS = 5.0
# After a failed pass (provider or database down), try again this soon.
RETRY_SECONDS = 2.0

_PENDING = """
    SELECT t.id, t.name, t.title, t.description, t.examples, t.content_hash
    FROM tools t LEFT JOIN tool_embeddings e ON e.tool_id = t.id AND e.model = $1
    WHERE t.status <> 'deleted' AND e.content_hash IS DISTINCT FROM t.content_hash
"""


@dataclass(frozen=True)
class SearchModel:
    model: str
    dimension: int
    embedder: Embedder


def index_name(model: str, dimension: int) -> str:
    """A safe, stable identifier for the model's partial HNSW index (model names may hold anything).

    ``_half``: the index holds halfvec elements (migration 0005 renamed the earlier vector indexes).
    """
    return f"tool_embeddings_hnsw_{hashlib.sha256(model.encode()).hexdigest()[:12]}_{dimension}_half"


async def tool_vectors(embedder: Embedder, texts: Sequence[Sequence[str]]) -> Vectors:
    """One vector per tool: the normalised, weighted mean of its texts' vectors.

    The centroid beat max-over-texts on MetaTool (R@5 .885 vs .837 with 5 examples per tool,
    docs/search.md) and keeps one row per tool, so one HNSW hit is one tool.
    """
    flat = [text for group in texts for text in group]
    rows = await embedder.embed(flat)
    out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    start = 0
    for i, group in enumerate(texts):
        block = rows[start : start + len(group)]
        start += len(group)
        mean = catalogue.DESCRIPTION_WEIGHT * block[0] + block[1:].sum(axis=0)
        out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


class Indexer:
    def __init__(self, database: Database, embedder: Embedder, *, interval: float = 10.0) -> None:
        self.database = database
        self.embedder = embedder
        self.interval = interval
        self._wake = asyncio.Event()
        self._search_model: tuple[float, SearchModel | None] | None = None

    async def prepare(self) -> None:
        """Register the configured model and create its partial HNSW index, once across replicas.

        The index covers only this model's rows, cast to its dimension, so models of different
        dimensions share the table. A new model has no rows yet, so the build is instantaneous.
        Its elements are 16-bit (halfvec): half the size, no measurable recall loss (docs/search.md);
        search orders by the same expression.
        """
        model, dimension = self.embedder.model, self.embedder.dimension
        async with self.database.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", advisory_key(catalogue.EMBEDDING_INDEX_LOCK))
            try:
                known = await conn.fetchval("SELECT dimension FROM embedding_models WHERE model = $1", model)
                if known is not None and known != dimension:
                    raise ValueError(f"model {model} is stored with dimension {known}, configured {dimension}")
                await conn.execute(
                    "INSERT INTO embedding_models (model, dimension) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    model,
                    dimension,
                )
                literal = "'" + model.replace("'", "''") + "'"
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {index_name(model, dimension)} ON tool_embeddings "
                    f"USING hnsw ((embedding::halfvec({int(dimension)})) halfvec_cosine_ops) WHERE model = {literal}"
                )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", advisory_key(catalogue.EMBEDDING_INDEX_LOCK))

    async def embed_tools(self, conn: asyncpg.Connection, tool_ids: Sequence[int]) -> int:
        """Embed those of ``tool_ids`` whose vector is missing or stale; returns how many."""
        rows = await conn.fetch(_PENDING + " AND t.id = ANY($2::bigint[])", self.embedder.model, list(tool_ids))
        if not rows:
            return 0
        vectors = await tool_vectors(
            self.embedder,
            [catalogue.embedding_texts(r["name"], r["title"], r["description"], r["examples"]) for r in rows],
        )
        # Store a vector only if the tool still has the text it was computed from (no stale writes).
        await conn.executemany(
            """INSERT INTO tool_embeddings (tool_id, model, content_hash, embedding)
               SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tools WHERE id = $1 AND content_hash = $3)
               ON CONFLICT (tool_id, model) DO UPDATE SET content_hash = excluded.content_hash,
                   embedding = excluded.embedding, updated_at = now()""",
            [(r["id"], self.embedder.model, r["content_hash"], v) for r, v in zip(rows, vectors, strict=True)],
        )
        return len(rows)

    async def embed_after_write(self, tool_id: int) -> None:
        """Inline embedding after a write; on failure the background loop retries later.

        The write has committed by now, so a database outage here must not turn its answer into a 503:
        the client would retry and get 409 for a tool it was told was not created.
        """
        try:
            async with self.database.connection() as conn:
                await self.embed_tools(conn, [tool_id])
        except (EmbeddingError, DatabaseUnavailable) as exc:
            logger.warning("embedding tool %d failed (%s); the indexer will retry", tool_id, exc)
            self.notify()

    def notify(self) -> None:
        """Wake the background loop now (after an import or a sync)."""
        self._wake.set()

    async def catch_up(self) -> int:
        """Embed every pending tool, if no other replica is doing it; returns how many were embedded."""
        done = 0
        lock = f"registry:reembed:{self.embedder.model}"
        async with self.database.connection() as conn, try_advisory_lock(conn, lock) as held:
            if not held:
                return 0
            while ids := [
                r["id"]
                for r in await conn.fetch(_PENDING + " ORDER BY t.id LIMIT $2", self.embedder.model, BATCH_TOOLS)
            ]:
                embedded = await self.embed_tools(conn, ids)
                done += embedded
                if embedded == 0:
                    break
            if not await conn.fetchval(f"SELECT EXISTS ({_PENDING})", self.embedder.model):
                became_ready = await conn.fetchval(
                    "UPDATE embedding_models SET ready_at = now() WHERE model = $1 AND ready_at IS NULL RETURNING true",
                    self.embedder.model,
                )
                if became_ready:
                    logger.info("model %s covers the catalogue: search switches to it", self.embedder.model)
                    self._search_model = None
        return done

    async def search_model(self) -> SearchModel | None:
        """The configured model once ready, else the newest ready model this provider can embed
        queries for, else ``None`` (search then falls back to full text)."""
        now = time.monotonic()
        if self._search_model is not None and now - self._search_model[0] < MODEL_CACHE_SECONDS:
            return self._search_model[1]
        async with self.database.connection() as conn:
            rows = await conn.fetch(
                "SELECT model, dimension FROM embedding_models WHERE ready_at IS NOT NULL "
                "ORDER BY model = $1 DESC, ready_at DESC",
                self.embedder.model,
            )
        chosen = None
        for row in rows:
            embedder = self.embedder.for_model(row["model"], row["dimension"])
            if embedder is not None:
                chosen = SearchModel(row["model"], row["dimension"], embedder)
                break
        self._search_model = (now, chosen)
        return chosen

    async def refresh_gauges(self) -> None:
        async with self.database.connection() as conn:
            for status, count in (await catalogue.count_by_status(conn)).items():
                observability.TOOLS.labels(status).set(count)

    async def run(self) -> None:
        """The background loop: catch up, refresh the gauges, sleep until woken or the interval passes."""
        while True:
            self._wake.clear()
            delay = self.interval
            try:
                embedded = await self.catch_up()
                if embedded:
                    logger.info("embedded %d tools with %s", embedded, self.embedder.model)
                await self.refresh_gauges()
            except (EmbeddingError, DatabaseUnavailable) as exc:
                logger.warning("indexer pass failed: %s", exc)
                delay = min(self.interval, RETRY_SECONDS)  # the circuit breaker keeps retries cheap
            except Exception:
                logger.exception("indexer pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
