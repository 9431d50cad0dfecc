"""The shared MCP mount: typed tools, errors, resources, and progress notifications reaching the client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import msgspec
import pytest
from litestar import Litestar
from mcp import Client

from platform_common.http import create_app
from platform_common.mcp import McpApp, McpResource, McpTool, ToolContext, ToolError
from tests.servers import running_server


class CountArgs(msgspec.Struct, forbid_unknown_fields=True):
    steps: int = msgspec.field(default=3)


class CountResult(msgspec.Struct):
    counted: int


async def count(args: CountArgs, ctx: ToolContext) -> CountResult:
    if args.steps < 0:
        raise ToolError("steps must not be negative")
    for step in range(1, args.steps + 1):
        await ctx.report_progress(step, args.steps, f"step {step}")
    return CountResult(counted=args.steps)


async def read_greeting(uri: str, principal: object) -> str:
    return '{"hello": "world"}'


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    mcp = McpApp(
        name="test",
        version="1",
        instructions="test server",
        tools=[McpTool("count", "Counts, reporting progress.", CountArgs, CountResult, count)],
        resources=[McpResource("test://greeting", "greeting", "A greeting.", read_greeting)],
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with mcp.lifespan():
            yield

    with running_server(create_app(route_handlers=[mcp.route()], lifespan=[lifespan])) as url:
        yield f"{url}/mcp"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_progress_notifications_reach_the_client(mcp_url: str, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(mcp_url, mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool("count", {"steps": 3}, progress_callback=on_progress)
    assert result.structured_content == {"counted": 3}
    assert [p for p, _, _ in seen] == [1, 2, 3]
    assert seen[-1][2] == "step 3"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_tool_errors_and_bad_arguments_are_error_results(mcp_url: str, mode: str) -> None:
    async with Client(mcp_url, mode=mode) as client:  # type: ignore[arg-type]
        failed = await client.call_tool("count", {"steps": -1})
        assert failed.is_error and "must not be negative" in failed.content[0].text  # type: ignore[union-attr]
        wrong = await client.call_tool("count", {"steps": "many"})
        assert wrong.is_error and "Invalid arguments" in wrong.content[0].text  # type: ignore[union-attr]
        resource = await client.read_resource("test://greeting")
        assert resource.contents[0].text == '{"hello": "world"}'  # type: ignore[union-attr]


async def test_calls_without_a_progress_token_get_plain_json(mcp_url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "count", "arguments": {}}}
    headers = {"Accept": "application/json, text/event-stream", "Mcp-Protocol-Version": "2025-06-18"}
    async with httpx.AsyncClient() as http:
        response = await http.post(mcp_url, json=body, headers=headers)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["structuredContent"] == {"counted": 3}
