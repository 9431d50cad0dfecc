"""Embedding providers against real HTTP, and re-embedding the catalogue when the model changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from platform_common.http import ObservedApp
from tests.registry.conftest import settings_for, tool
from tests.registry.embedding_double import EmbeddingDouble, embedding_double
from tests.servers import running_server
from tool_registry.app import build_app
from tool_registry.embeddings import CircuitBreaker, EmbeddingError, LocalEmbedder, OpenAIEmbedder, QueryCache

SECRET = "sk-test-never-logged"


@pytest.fixture
def double() -> Iterator[tuple[EmbeddingDouble, str]]:
    with embedding_double() as pair:
        yield pair


async def test_local_minilm_embeds_normalised_384_dimension_vectors() -> None:
    embedder = LocalEmbedder()
    rows = await embedder.embed(["find a cheap flight", "book a plane ticket", "bake sourdough bread"])
    assert rows.shape == (3, 384)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert rows[0] @ rows[1] > rows[0] @ rows[2]


QUERIES = [
    "Which tool: find me a cheap flight to Paris next Tuesday",
    "Which tool: weather",
    "Which tool: what is the stock price of Apple today?",
    "Which tool: book a hotel room near the station for two nights",
    "Which tool: convert 30 euros to dollars",
    "Which tool: extract the text of this PDF",
]


async def test_concurrent_queries_share_model_runs_and_get_the_rows_they_would_get_alone() -> None:
    embedder = LocalEmbedder(threads=1)
    alone = np.stack([embedder.encode([query])[0] for query in QUERIES])
    before = embedder.batches
    rows = await asyncio.gather(*(embedder.embed([query]) for query in QUERIES))
    # Six concurrent callers, fewer model runs: the first waited (2 ms) for the others, or they queued
    # behind its run and went together in the next one.
    assert embedder.batches - before < len(QUERIES)
    assert np.array_equal(np.concatenate(rows), alone)


async def test_a_failed_model_run_fails_its_caller_and_the_batch_thread_goes_on() -> None:
    embedder = LocalEmbedder(threads=1)
    not_text: Any = [b"bytes are not text"]  # the tokenizer raises TypeError inside the batch thread
    with pytest.raises(EmbeddingError):
        await embedder.embed(not_text)
    assert (await embedder.embed([QUERIES[0]])).shape == (1, 384)


async def test_openai_provider_retries_server_errors_but_not_client_errors(
    double: tuple[EmbeddingDouble, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, url = double
    caplog.set_level(logging.DEBUG)
    embedder = OpenAIEmbedder(url, "m1", 8, SECRET, backoff=0.01, batch_size=2)
    server.script = [503, 429]
    rows = await embedder.embed(["a", "b", "c"])  # two batches; the first needs three attempts
    assert rows.shape == (3, 8) and len(server.requests) == 4
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"

    server.script = [400]
    with pytest.raises(EmbeddingError):
        await embedder.embed(["d"])
    assert len(server.requests) == 5  # a 4xx other than 429 is never retried
    assert SECRET not in caplog.text
    await embedder.close()


async def test_openai_provider_circuit_opens_and_half_opens(double: tuple[EmbeddingDouble, str]) -> None:
    server, url = double
    breaker = CircuitBreaker(threshold=2, cooldown=0.3)
    embedder = OpenAIEmbedder(url, "m1", 8, max_attempts=1, breaker=breaker)
    server.fail("m1", 500)
    for _ in range(2):
        with pytest.raises(EmbeddingError):
            await embedder.embed(["x"])
    calls = len(server.requests)
    with pytest.raises(EmbeddingError, match="circuit is open"):
        await embedder.embed(["x"])
    assert len(server.requests) == calls  # refused without a request
    server.recover("m1")
    await asyncio.sleep(0.35)
    assert (await embedder.embed(["x"])).shape == (1, 8)  # the half-open trial succeeds and closes it
    assert breaker.opened_at is None
    await embedder.close()


async def test_query_cache_hits_skip_the_provider(double: tuple[EmbeddingDouble, str]) -> None:
    server, url = double
    embedder = OpenAIEmbedder(url, "m1", 8)
    cache = QueryCache(max_entries=2)
    first = await cache.embed_query(embedder, "weather")
    again = await cache.embed_query(embedder, "weather")
    assert np.array_equal(first, again) and len(server.requests) == 1
    await embedder.close()


async def wait_for(http: httpx.AsyncClient, predicate: str, expected: object, timeout: float = 20) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stats: dict[str, object] = (await http.get("/api/v1/stats")).json()
        if stats[predicate] == expected:
            return stats
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"stats never had {predicate}={expected}: {stats}")
        await asyncio.sleep(0.2)


async def test_model_change_reembeds_in_the_background_without_downtime(
    database_url: str, double: tuple[EmbeddingDouble, str]
) -> None:
    server, url = double

    def app(model: str, dimension: int) -> ObservedApp:
        settings = settings_for(
            database_url,
            embedding_provider="openai",
            embedding_endpoint_url=url,
            embedding_model=model,
            embedding_dimension=dimension,
        )
        return ObservedApp(build_app(settings))

    with running_server(app("m1", 8)) as registry:
        async with httpx.AsyncClient(base_url=registry) as http:
            for name, text in (("rain", "rain forecast weather"), ("bread", "bake bread"), ("stock", "stock price")):
                assert (await http.post("/api/v1/tools", json=tool(name, text))).status_code == 201
            await wait_for(http, "search_model", "m1")
            before = server.count("m1")
            await http.patch("/api/v1/tools/rain", json={"category": "weather", "tags": ["x"]})
            assert server.count("m1") == before  # the embedded text did not change
            await http.patch("/api/v1/tools/rain", json={"description": "rain and wind forecast weather"})
            assert server.count("m1") == before + 1

    server.fail("m2")  # the new model's service is down at first
    with running_server(app("m2", 16)) as registry:
        async with httpx.AsyncClient(base_url=registry) as http:
            response = await http.post("/api/v1/search", json={"query": "weather forecast", "mode": "vector"})
            assert response.json()["model"] == "m1"  # still the old, complete model
            assert response.json()["results"][0]["name"] == "rain"
            server.recover("m2")
            stats = await wait_for(http, "search_model", "m2")
            assert {m["model"]: m["embedded_tools"] for m in stats["models"]} == {"m1": 3, "m2": 3}  # type: ignore[attr-defined]
            response = await http.post("/api/v1/search", json={"query": "weather forecast", "mode": "vector"})
            assert response.json()["model"] == "m2" and response.json()["results"][0]["name"] == "rain"
