"""Bulk imports: precomputed vectors are searchable when the import answers; the others are counted as
pending (in the answer and in the stats) until the indexer has embedded them; any failure keeps nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest

from platform_common.http import ObservedApp
from tests.registry.conftest import settings_for, tool
from tests.registry.embedding_double import EmbeddingDouble, embedding_double
from tests.servers import running_server
from tool_registry.app import build_app
from tool_registry.embeddings import LOCAL_MODEL, LOCAL_QUERY_PREFIX, LocalEmbedder

QUERY = "translate this sentence into Japanese"


def with_vectors(count: int, special: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` tools with random unit vectors, tool ``special`` carrying exactly the query's vector."""
    rng = np.random.default_rng(seed)
    query = LocalEmbedder().encode([LOCAL_QUERY_PREFIX + QUERY])[0]
    items = []
    for i in range(count):
        vector = rng.standard_normal(384).astype(np.float32)
        vector = query if i == special else vector / np.linalg.norm(vector)
        embedding = {"model": LOCAL_MODEL, "vector": [float(x) for x in vector]}
        items.append({**tool(f"bulk.{i:04d}", f"Bulk tool number {i}."), "embedding": embedding})
    return items


async def model_state(http: httpx.AsyncClient, model: str) -> dict[str, Any]:
    stats = (await http.get("/api/v1/stats")).json()
    state: dict[str, Any] = next(m for m in stats["models"] if m["model"] == model)
    return state


async def test_precomputed_vectors_are_searchable_when_the_import_answers(database_url: str, registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url, timeout=120) as http:
        response = await http.post("/api/v1/tools/import", json=with_vectors(1500, special=1234))
        assert response.status_code == 200, response.text
        assert response.json() == {"created": 1500, "replaced": 0, "embeddings_pending": 0}
        found = await http.post("/api/v1/search", json={"query": QUERY, "mode": "vector", "limit": 3})
        assert found.json()["results"][0]["name"] == "bulk.1234"
        state = await model_state(http, LOCAL_MODEL)
        assert (state["embedded_tools"], state["pending_embeddings"]) == (1500, 0)
    # The catalogue grew from nothing: the import analyzed both tables, so the planner already knows
    # the HNSW index beats sorting 1,500 vectors (with an empty table's statistics it sorts them all).
    conn = await asyncpg.connect(database_url)
    try:
        analyzed = await conn.fetch(
            "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL ORDER BY relname"
        )
        statistics = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'tools'::regclass")
    finally:
        await conn.close()
    assert [row["relname"] for row in analyzed] == ["tool_embeddings", "tools"]
    assert statistics == 1500


async def test_an_import_failing_in_the_database_keeps_no_tool_and_no_vector(registry_url: str) -> None:
    items = with_vectors(600, special=0)
    items[417]["description"] = "NUL \x00 cannot be stored"  # passes validation, refused by PostgreSQL
    async with httpx.AsyncClient(base_url=registry_url, timeout=120) as http:
        response = await http.post("/api/v1/tools/import", json=items)
        assert response.status_code == 400, response.text
        stats = (await http.get("/api/v1/stats")).json()
        assert stats["total"] == 0
        assert [m["embedded_tools"] for m in stats["models"]] == [0]
        items[417]["description"] = "Stored."  # the same import, fixed, goes through whole
        assert (await http.post("/api/v1/tools/import", json=items)).json()["created"] == 600


@pytest.fixture
def double() -> Iterator[tuple[EmbeddingDouble, str]]:
    with embedding_double() as pair:
        yield pair


async def test_tools_without_vectors_are_pending_until_embedded(
    database_url: str, double: tuple[EmbeddingDouble, str]
) -> None:
    server, url = double
    settings = settings_for(
        database_url,
        embedding_provider="openai",
        embedding_endpoint_url=url,
        embedding_model="m1",
        embedding_dimension=8,
    )
    server.fail("m1")  # the embedding service is down: nothing can be embedded yet
    with running_server(ObservedApp(build_app(settings))) as registry:
        async with httpx.AsyncClient(base_url=registry, timeout=60) as http:
            items = [tool("rain", "rain forecast weather"), tool("bread", "bake bread"), tool("stock", "stock price")]
            response = await http.post("/api/v1/tools/import", json=items)
            assert response.json()["embeddings_pending"] == 3
            state = await model_state(http, "m1")
            assert (state["embedded_tools"], state["pending_embeddings"]) == (0, 3)
            server.recover("m1")
            for _ in range(150):
                state = await model_state(http, "m1")
                if state["pending_embeddings"] == 0:
                    break
                await asyncio.sleep(0.2)
            assert (state["embedded_tools"], state["pending_embeddings"]) == (3, 0)
            found = await http.post("/api/v1/search", json={"query": "weather forecast", "mode": "vector"})
            assert found.json()["results"][0]["name"] == "rain"


async def hnsw_indexes(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'tool_embeddings' AND indexdef LIKE '%USING hnsw%'"
        )
    finally:
        await conn.close()
    return [row["indexdef"] for row in rows]


async def test_a_large_import_rebuilds_the_index_and_leaves_it_searchable(database_url: str, registry_url: str) -> None:
    """An import that at least doubles the model's vectors drops the HNSW index and builds it again in
    its transaction (catalogue._rebuild_index); a smaller one inserts into it. Either way the same index
    exists afterwards and the search uses it."""
    async with httpx.AsyncClient(base_url=registry_url, timeout=120) as http:
        before = await hnsw_indexes(database_url)
        assert len(before) == 1
        first = with_vectors(1200, special=1100)
        assert (await http.post("/api/v1/tools/import", json=first)).json()["created"] == 1200
        assert await hnsw_indexes(database_url) == before
        found = await http.post("/api/v1/search", json={"query": QUERY, "mode": "vector", "limit": 3})
        assert found.json()["results"][0]["name"] == "bulk.1100"
        # 1,000 more onto 1,200: below doubling, inserted into the graph; the new best match is found.
        second = with_vectors(2200, special=2100, seed=1)[1200:]
        assert (await http.post("/api/v1/tools/import", json=second)).json()["created"] == 1000
        assert await hnsw_indexes(database_url) == before
        found = await http.post("/api/v1/search", json={"query": QUERY, "mode": "vector", "limit": 3})
        assert {hit["name"] for hit in found.json()["results"][:2]} == {"bulk.1100", "bulk.2100"}
        state = await model_state(http, LOCAL_MODEL)
        assert (state["embedded_tools"], state["pending_embeddings"]) == (2200, 0)
    conn = await asyncpg.connect(database_url)
    try:
        vector = "[" + ",".join(str(float(x)) for x in LocalEmbedder().encode([LOCAL_QUERY_PREFIX + QUERY])[0]) + "]"
        plan = await conn.fetch(
            "EXPLAIN SELECT tool_id FROM tool_embeddings WHERE model = $2 "
            "ORDER BY embedding::halfvec(384) <=> $1::halfvec(384) LIMIT 10",
            vector,
            LOCAL_MODEL,
        )
    finally:
        await conn.close()
    assert "Index Scan using tool_embeddings_hnsw_" in "\n".join(row[0] for row in plan), plan


async def test_a_large_import_failing_after_the_index_drop_keeps_nothing_and_the_index(
    database_url: str, registry_url: str
) -> None:
    """The failure comes in the insert, after the rebuild path dropped the index: the whole transaction,
    the drop included, rolls back."""
    items = with_vectors(1500, special=0)
    # Valid JSON and a valid schema, but PostgreSQL's jsonb refuses the NUL escape: the insert fails.
    items[1400]["input_schema"] = {"type": "object", "description": "NUL \x00 in jsonb"}
    before = await hnsw_indexes(database_url)
    async with httpx.AsyncClient(base_url=registry_url, timeout=120) as http:
        response = await http.post("/api/v1/tools/import", json=items)
        assert response.status_code == 400, response.text
        assert await hnsw_indexes(database_url) == before
        stats = (await http.get("/api/v1/stats")).json()
        assert stats["total"] == 0
        assert [m["embedded_tools"] for m in stats["models"]] == [0]
        items[1400]["input_schema"] = {"type": "object"}
        assert (await http.post("/api/v1/tools/import", json=items)).json()["created"] == 1500
        assert await hnsw_indexes(database_url) == before
        found = await http.post("/api/v1/search", json={"query": QUERY, "mode": "vector", "limit": 3})
        assert found.json()["results"][0]["name"] == "bulk.0000"
