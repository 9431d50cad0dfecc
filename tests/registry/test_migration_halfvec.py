"""Migration 0005 replaces each model's vector HNSW index with a halfvec one that search plans use."""

from __future__ import annotations

from importlib import resources

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from tool_registry import search
from tool_registry.indexer import index_name

MIGRATIONS = resources.files("tool_registry.migrations")
MODEL = "all-MiniLM-L6-v2"


async def test_the_vector_index_becomes_a_halfvec_index_the_search_uses(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for name in ("0001_catalogue.sql", "0002_rate_limits.sql", "0003_upstream_trust.sql", "0004_audit.sql"):
            await conn.execute((MIGRATIONS / name).read_text(encoding="utf-8"))
        await register_vector(conn)
        # The index as indexer.prepare created it before 0005.
        old_name = index_name(MODEL, 384).removesuffix("_half")
        await conn.execute("INSERT INTO embedding_models (model, dimension, ready_at) VALUES ($1, 384, now())", MODEL)
        await conn.execute(
            f"CREATE INDEX {old_name} ON tool_embeddings "
            f"USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE model = '{MODEL}'"
        )
        rng = np.random.default_rng(0)
        for i in range(200):
            tool_id = await conn.fetchval(
                "INSERT INTO tools (name, input_schema, content_hash) VALUES ($1, '{}', 'h') RETURNING id", f"t{i}"
            )
            await conn.execute(
                "INSERT INTO tool_embeddings (tool_id, model, content_hash, embedding) VALUES ($1, $2, 'h', $3)",
                tool_id,
                MODEL,
                rng.standard_normal(384).astype(np.float32),
            )
        await conn.execute((MIGRATIONS / "0005_halfvec_index.sql").read_text(encoding="utf-8"))
        indexes = {
            row["indexname"]: row["indexdef"]
            for row in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE '%hnsw%'")
        }
        await conn.execute("SET enable_seqscan = off")  # 200 rows: make the planner show it can use the index
        plan = "\n".join(
            row[0]
            for row in await conn.fetch(
                "EXPLAIN " + search.candidates_sql("vector", MODEL, 384),
                rng.standard_normal(384).astype(np.float32),
                "query",
                None,
                [],
                20,
                None,
            )
        )
    finally:
        await conn.close()
    assert list(indexes) == [index_name(MODEL, 384)]
    assert "halfvec_cosine_ops" in indexes[index_name(MODEL, 384)]
    assert index_name(MODEL, 384) in plan, plan
