"""Search over REST and MCP: modes, filters inside the index scan, calibrated scores, MCP tools."""

from __future__ import annotations

import httpx
import pytest
from mcp import Client

from platform_common.db import Database
from tests.registry.conftest import tool
from tool_registry.search import SERVER_SETTINGS

CATALOGUE = [
    tool(
        "weather.forecast",
        "Get the weather forecast for a city: temperature, rain and wind.",
        category="weather",
        tags=["forecast"],
    ),
    tool("flights.search", "Search cheap flights between two airports on a given date.", category="travel"),
    tool("hotels.book", "Book a hotel room in any city.", category="travel", tags=["booking"]),
    tool("pdf.extract_text", "Extract the text of a PDF document.", category="documents"),
    tool(
        "stocks.quote",
        "Real-time stock prices and market data for a ticker symbol.",
        category="finance",
        examples=["how is AAPL doing today?"],
    ),
]


@pytest.fixture
async def catalogue(registry_url: str) -> str:
    async with httpx.AsyncClient(base_url=registry_url, timeout=30) as http:
        for body in CATALOGUE:
            assert (await http.post("/api/v1/tools", json=body)).status_code == 201
    return registry_url


async def search(http: httpx.AsyncClient, **body: object) -> list[dict[str, object]]:
    response = await http.post("/api/v1/search", json=body)
    assert response.status_code == 200, response.text
    results: list[dict[str, object]] = response.json()["results"]
    return results


async def test_modes_rank_the_right_tool_first_with_calibrated_scores(catalogue: str) -> None:
    async with httpx.AsyncClient(base_url=catalogue) as http:
        for mode in ("hybrid", "vector", "text"):
            results = await search(http, query="will it rain tomorrow in Paris? weather", mode=mode)
            assert results[0]["name"] == "weather.forecast", mode
            scores = [r["score"] for r in results]
            assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)  # type: ignore[operator]
        # An example request counts toward its tool's match.
        assert (await search(http, query="how is AAPL doing today?"))[0]["name"] == "stocks.quote"
        # A fixed calibration: an unrelated request scores low, so min_score filters it out entirely.
        assert await search(http, query="a poem about the quiet sea", min_score=0.5) == []
        strong = await search(http, query="get the weather forecast for a city", min_score=0.5)
        assert [r["name"] for r in strong] == ["weather.forecast"]


async def test_filters_and_deleted_tools(catalogue: str) -> None:
    async with httpx.AsyncClient(base_url=catalogue) as http:
        travel = await search(http, query="weather forecast", category="travel", limit=10)
        assert {r["name"] for r in travel} == {"flights.search", "hotels.book"}
        tagged = await search(http, query="book something", tags=["booking"])
        assert [r["name"] for r in tagged] == ["hotels.book"]
        await http.delete("/api/v1/tools/hotels.book")
        assert "hotels.book" not in {r["name"] for r in await search(http, query="book a hotel room", limit=50)}


async def test_a_filtered_search_fills_its_limit_from_deep_in_the_index(registry_url: str) -> None:
    # 12 tools in a rare category among 400 whose texts are all closer to the query. A tag filter runs
    # inside the HNSW iterative scan, which walks on until 10 rare ones pass; a small category is ranked
    # exactly instead (search.EXACT_SCAN_MAX_ROWS). Both must fill the limit.
    near = [tool(f"near.{i}", f"Weather forecast for region {i}.", category="weather") for i in range(400)]
    rare = [tool(f"rare.{i}", f"Bake bread recipe number {i}.", category="cooking", tags=["bread"]) for i in range(12)]
    async with httpx.AsyncClient(base_url=registry_url, timeout=120) as http:
        assert (await http.post("/api/v1/tools/import", json=near + rare)).status_code == 200
        for _ in range(600):
            stats = (await http.get("/api/v1/stats")).json()
            if stats["search_model"] and stats["models"][0]["embedded_tools"] == 412:
                break
            import asyncio

            await asyncio.sleep(0.2)
        by_category = await search(http, query="weather forecast", category="cooking", limit=10, mode="vector")
        by_tag = await search(http, query="weather forecast", tags=["bread"], limit=10, mode="vector")
    for results in (by_category, by_tag):
        assert len(results) == 10 and all(str(r["name"]).startswith("rare.") for r in results)
    # The exact ranking and the index's agree here (the graph is small): same tools, same order.
    assert [r["name"] for r in by_category] == [r["name"] for r in by_tag]


async def test_bad_search_requests(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url) as http:
        for body in (
            {"query": "x" * 1001},
            {"query": ""},
            {"query": "x", "limit": 51},
            {"query": "x", "mode": "magic"},
            {"query": "x", "min_score": 2},
            {"query": "x", "unknown": 1},
        ):
            response = await http.post("/api/v1/search", json=body)
            assert response.status_code == 400, body
            assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_mcp_tools_and_resources(catalogue: str, mode: str) -> None:
    async with Client(f"{catalogue}/mcp", mode=mode) as client:  # type: ignore[arg-type]
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert "travel" in (listed["find_tools"].description or "")  # live category list
        assert listed["find_tools"].output_schema is not None

        found = await client.call_tool("find_tools", {"query": "cheap flight to Rome", "limit": 3})
        assert not found.is_error
        assert found.structured_content["results"][0]["name"] == "flights.search"

        one = await client.call_tool("get_tool", {"name": "pdf.extract_text"})
        assert one.structured_content["input_schema"]["type"] == "object"
        missing = await client.call_tool("get_tool", {"name": "nope"})
        assert missing.is_error and "find_tools" in missing.content[0].text  # type: ignore[union-attr]

        page = await client.call_tool("list_tools", {"category": "travel"})
        assert [t["name"] for t in page.structured_content["tools"]] == ["flights.search", "hotels.book"]
        categories = await client.call_tool("list_categories", {})
        assert {"name": "travel", "tools": 2} in categories.structured_content["categories"]

        manual = await client.call_tool("call_tool", {"name": "pdf.extract_text", "arguments": {}})
        assert manual.is_error and "no upstream" in manual.content[0].text  # type: ignore[union-attr]

        stats = await client.read_resource("registry://stats")
        assert '"total":5' in stats.contents[0].text  # type: ignore[union-attr]
        cats = await client.read_resource("registry://categories")
        assert "travel" in cats.contents[0].text  # type: ignore[union-attr]


async def test_search_connections_keep_their_session_settings_across_pool_resets(database_url: str) -> None:
    """A search is one statement without SET LOCAL: its settings come with every pooled connection,
    and the pool's RESET ALL on release returns them to those start-up values, not to the defaults."""
    database = Database(database_url, max_size=1, server_settings=SERVER_SETTINGS)
    try:
        for _ in range(2):  # the second acquire gets the same connection after RESET ALL
            async with database.connection() as conn:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                shown = {name: await conn.fetchval(f"SHOW {name}") for name in SERVER_SETTINGS}
                await conn.execute("SET plan_cache_mode = auto")
        assert shown == SERVER_SETTINGS
    finally:
        await database.close()
