"""The catalogue over REST: CRUD, history, pagination, bulk import and rejecting bad input whole."""

from __future__ import annotations

from typing import Any

import httpx

from tests.registry.conftest import tool

PROBLEM = "application/problem+json"


async def count(http: httpx.AsyncClient) -> int:
    stats = (await http.get("/api/v1/stats")).json()
    return int(stats["total"])


async def test_create_read_replace_patch_delete_with_history(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url) as http:
        created = await http.post(
            "/api/v1/tools",
            json=tool("weather.forecast", "Forecast the weather.", category="weather", tags=["forecast"]),
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "active" and body["source"] == "manual" and body["version"] == "1.0.0"

        duplicate = await http.post("/api/v1/tools", json=tool("weather.forecast"))
        assert duplicate.status_code == 409
        assert duplicate.headers["content-type"].startswith(PROBLEM)

        replaced = await http.put(
            "/api/v1/tools/weather.forecast",
            json=tool("weather.forecast", "Forecast rain and sun.", category="weather", version="1.1.0"),
        )
        assert replaced.status_code == 200 and replaced.json()["version"] == "1.1.0"
        assert replaced.json()["tags"] == []  # PUT replaces every field

        patched = await http.patch("/api/v1/tools/weather.forecast", json={"tags": ["rain"], "status": "deprecated"})
        assert patched.status_code == 200
        assert patched.json()["tags"] == ["rain"] and patched.json()["description"] == "Forecast rain and sun."
        assert patched.json()["status"] == "deprecated"

        assert (await http.delete("/api/v1/tools/weather.forecast")).status_code == 204
        read = await http.get("/api/v1/tools/weather.forecast")
        assert read.status_code == 200 and read.json()["status"] == "deleted"
        assert (await http.get("/api/v1/tools/nope")).status_code == 404

        history = (await http.get("/api/v1/tools/weather.forecast/history")).json()
        assert [h["operation"] for h in history] == ["delete", "patch", "replace", "create"]
        assert all(h["actor"] == "anonymous" for h in history)
        assert history[0]["before"]["status"] == "deprecated" and history[0]["after"]["status"] == "deleted"
        assert history[-1]["before"] is None and history[-1]["after"]["description"] == "Forecast the weather."


async def test_listing_filters_and_cursor_pagination(registry_url: str) -> None:
    items = [
        tool(f"t{i:02d}", category="even" if i % 2 == 0 else "odd", tags=["x"] if i < 5 else []) for i in range(25)
    ]
    async with httpx.AsyncClient(base_url=registry_url) as http:
        assert (await http.post("/api/v1/tools/import", json=items)).status_code == 200
        await http.delete("/api/v1/tools/t00")
        names: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/v1/tools", params=params)).json()
            names += [t["name"] for t in page["tools"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert names == [f"t{i:02d}" for i in range(1, 25)]  # deleted ones are hidden by default
        odd = (await http.get("/api/v1/tools", params={"category": "odd", "tag": "x"})).json()["tools"]
        assert [t["name"] for t in odd] == ["t01", "t03"]
        deleted = (await http.get("/api/v1/tools", params={"status": "deleted"})).json()["tools"]
        assert [t["name"] for t in deleted] == ["t00"]
        bad = await http.get("/api/v1/tools", params={"cursor": "garbage!"})
        assert bad.status_code == 400 and bad.headers["content-type"].startswith(PROBLEM)
        categories = (await http.get("/api/v1/categories")).json()["categories"]
        assert categories == [{"name": "even", "tools": 12}, {"name": "odd", "tools": 12}]


async def test_import_creates_or_replaces_by_name(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url) as http:
        await http.post("/api/v1/tools", json=tool("a", "old"))
        result = await http.post("/api/v1/tools/import", json=[tool("a", "new"), tool("b")])
        assert result.status_code == 200, result.text
        assert result.json()["created"] == 1 and result.json()["replaced"] == 1
        assert (await http.get("/api/v1/tools/a")).json()["description"] == "new"
        history = (await http.get("/api/v1/tools/a/history")).json()
        assert history[0]["operation"] == "import" and history[0]["before"]["description"] == "old"


async def test_import_is_all_or_nothing(registry_url: str) -> None:
    items = [tool(f"bulk.{i}") for i in range(1000)]
    items[637]["input_schema"] = {"type": "object", "properties": {"q": {"type": "no-such-type"}}}
    async with httpx.AsyncClient(base_url=registry_url, timeout=60) as http:
        response = await http.post("/api/v1/tools/import", json=items)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["errors"][0]["key"] == "[637].input_schema"
        assert await count(http) == 0
        items[637] = tool("bulk.1")  # a duplicate name inside the import
        response = await http.post("/api/v1/tools/import", json=items)
        assert response.status_code == 422 and "duplicate" in response.text
        items[637] = {**tool("bulk.637"), "surprise": True}  # an unknown field
        assert (await http.post("/api/v1/tools/import", json=items)).status_code == 400
        assert await count(http) == 0


BAD_TOOLS: list[tuple[str, dict[str, Any], int]] = [
    ("invalid name", tool("has space"), 400),
    ("empty name", tool(""), 400),
    ("long name", tool("n" * 129), 400),
    ("schema not an object", tool("s", input_schema={"type": "string"}), 422),
    ("schema invalid", tool("s", input_schema={"type": "object", "required": "q"}), 422),
    ("schema missing", {"name": "s", "description": "x"}, 400),
    ("wrong type", tool("s", tags="not-a-list"), 400),
    ("unknown field", tool("s", colour="blue"), 400),
    ("too many tags", tool("s", tags=[f"t{i}" for i in range(33)]), 400),
    ("long example", tool("s", examples=["x" * 513]), 400),
    ("long description", tool("s", "d" * 4097), 400),
    ("bad version", tool("s", version="v1"), 400),
    ("huge schema", tool("s", input_schema={"type": "object", "description": "x" * 70_000}), 422),
    ("deleted status", tool("s", status="deleted"), 400),
]


async def test_bad_tools_are_rejected_with_problem_details_and_nothing_stored(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url) as http:
        for label, body, status in BAD_TOOLS:
            response = await http.post("/api/v1/tools", json=body)
            assert response.status_code == status, (label, response.text)
            assert response.headers["content-type"].startswith(PROBLEM), label
            assert response.json()["status"] == status
        not_json = await http.post("/api/v1/tools", content=b"{nope", headers={"content-type": "application/json"})
        assert not_json.status_code == 400
        assert await count(http) == 0
        mismatch = await http.put("/api/v1/tools/other", json=tool("s"))
        assert mismatch.status_code in (404, 422)


async def test_oversized_bodies_are_refused(database_url: str) -> None:
    from platform_common.http import ObservedApp
    from tests.registry.conftest import settings_for
    from tests.servers import running_server
    from tool_registry.app import build_app

    app = ObservedApp(build_app(settings_for(database_url, max_request_bytes=4096)))
    with running_server(app) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/api/v1/tools/import", json=[tool(f"x{i}", "d" * 100) for i in range(100)])
            assert response.status_code == 413
            assert await count(http) == 0
