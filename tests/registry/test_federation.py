"""Federation with a real upstream MCP server on 127.0.0.1: register, sync, call, resync, remove."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import msgspec
import pytest
from litestar import Litestar
from mcp import Client
from prometheus_client import REGISTRY

from platform_common.http import ObservedApp, create_app
from platform_common.mcp import McpApp, McpTool, ToolContext
from tests.registry.conftest import settings_for
from tests.servers import free_port, running_server
from tool_registry.app import build_app


class EchoArgs(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class Echo(msgspec.Struct):
    text: str


class AddArgs(msgspec.Struct, forbid_unknown_fields=True):
    a: int
    b: int


class Sum(msgspec.Struct):
    sum: int


async def echo(args: EchoArgs, _: ToolContext) -> Echo:
    return Echo(args.text)


async def add(args: AddArgs, _: ToolContext) -> Sum:
    return Sum(args.a + args.b)


def upstream(with_add: bool) -> Litestar:
    tools: list[McpTool[msgspec.Struct]] = [
        McpTool(name="echo", description="Repeat the given text back.", arguments=EchoArgs, result=Echo, handler=echo),  # type: ignore[arg-type]
    ]
    if with_add:
        tools.append(McpTool(name="add", description="Add two integers.", arguments=AddArgs, result=Sum, handler=add))  # type: ignore[arg-type]
    mcp = McpApp(name="upstream", version="1.0.0", instructions="test upstream", tools=tools)
    return create_app(route_handlers=[mcp.route()], lifespan=[mcp.lifespan])


@pytest.fixture
def registry_url(database_url: str) -> Iterator[str]:
    with running_server(ObservedApp(build_app(settings_for(database_url)))) as url:
        yield url


async def test_register_sync_call_and_resync(registry_url: str) -> None:
    port = free_port()
    async with httpx.AsyncClient(base_url=registry_url, timeout=60) as http:
        with running_server(upstream(with_add=True), port=port) as up:
            outside = await http.post("/api/v1/servers", json={"name": "evil", "url": "http://example.com/mcp"})
            assert outside.status_code == 403
            broken = await http.post("/api/v1/servers", json={"name": "broken", "url": "http://a]"})
            assert broken.status_code == 422
            # A trusted upstream: its tools need no review (tests/registry/test_pinning.py covers review).
            body = {"name": "up", "url": f"{up}/mcp", "auto_approve": True}
            created = await http.post("/api/v1/servers", json=body)
            assert created.status_code == 201, created.text
            # A server's failure counter is exported at 0 before any sync, so increase() sees the first failure.
            fresh = {"name": f"fresh-{port}", "url": f"{up}/mcp"}
            assert (await http.post("/api/v1/servers", json=fresh)).status_code == 201
            assert REGISTRY.get_sample_value("registry_upstream_sync_failures_total", {"server": fresh["name"]}) == 0
            assert (await http.delete(f"/api/v1/servers/{fresh['name']}")).status_code == 204
            assert (await http.post("/api/v1/servers", json=body)).status_code == 409

            synced = await http.post("/api/v1/servers/up/sync")
            assert synced.status_code == 200, synced.text
            assert synced.json() == {
                "server": "up",
                "created": 2,
                "updated": 0,
                "unchanged": 0,
                "deactivated": 0,
                "held": 0,
            }
            echo_tool = (await http.get("/api/v1/tools/up.echo")).json()
            assert echo_tool["source"] == "up" and echo_tool["input_schema"]["required"] == ["text"]
            again = (await http.post("/api/v1/servers/up/sync")).json()
            assert again["unchanged"] == 2 and again["created"] == 0

            async with Client(f"{registry_url}/mcp", mode="legacy") as client:
                result = await client.call_tool("call_tool", {"name": "up.add", "arguments": {"a": 2, "b": 3}})
                assert not result.is_error, result.content
                assert result.structured_content["structured_content"] == {"sum": 5}
                bad = await client.call_tool("call_tool", {"name": "up.add", "arguments": {"a": "two", "b": 3}})
                assert bad.is_error and "Invalid arguments" in bad.content[0].text  # type: ignore[union-attr]
                missing = await client.call_tool("call_tool", {"name": "up.add", "arguments": {"a": 1}})
                assert missing.is_error and '"b" is a required property' in missing.content[0].text  # type: ignore[union-attr]

        # The upstream restarts on the same address without "add": a resync deprecates it.
        with running_server(upstream(with_add=False), port=port):
            synced = await http.post("/api/v1/servers/up/sync")
            assert synced.json()["deactivated"] == 1 and synced.json()["unchanged"] == 1
            assert (await http.get("/api/v1/tools/up.add")).json()["status"] == "deprecated"
            history = (await http.get("/api/v1/tools/up.add/history")).json()
            assert [h["operation"] for h in history] == ["sync", "sync"] and history[0]["actor"] == "anonymous"
            assert REGISTRY.get_sample_value("registry_upstream_last_sync_success_timestamp", {"server": "up"})

        # Upstream gone: the sync fails with 502 and is counted; calls fail with a clear message.
        failed = await http.post("/api/v1/servers/up/sync")
        assert failed.status_code == 502 and failed.headers["content-type"].startswith("application/problem+json")
        assert REGISTRY.get_sample_value("registry_upstream_sync_failures_total", {"server": "up"})
        server = (await http.get("/api/v1/servers/up")).json()
        assert server["last_sync_error"] and server["tool_count"] == 1

        assert (await http.delete("/api/v1/servers/up")).status_code == 204
        assert (await http.get("/api/v1/tools/up.echo")).json()["status"] == "deleted"
        assert (await http.get("/api/v1/servers")).json() == []


async def test_an_empty_allowlist_allows_no_upstream(database_url: str) -> None:
    settings = settings_for(database_url, upstream_allowed_hosts=[])
    with running_server(ObservedApp(build_app(settings))) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.post("/api/v1/servers", json={"name": "up", "url": "http://127.0.0.1:1/mcp"})
            assert response.status_code == 403
            assert "UPSTREAM_ALLOWED_HOSTS" in response.json()["detail"]
