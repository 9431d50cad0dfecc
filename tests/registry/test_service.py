"""The registry as a running service: health, readiness, OpenAPI, metrics and MCP in both protocol eras."""

from __future__ import annotations

import httpx
import pytest
from mcp import Client
from prometheus_client import REGISTRY

from platform_common.settings import SettingsError
from tool_registry.app import build_app
from tool_registry.config import RegistrySettings


async def test_health_and_ready(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        ready = await http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok"}


async def test_ready_is_503_with_a_reason_when_the_database_is_unreachable() -> None:
    settings = RegistrySettings.from_env(
        {},
        database_url="postgresql://nobody:x@127.0.0.1:1/none",
        auth_mode="none",
        database_timeout_seconds=1,
    )
    app = build_app(settings)
    # httpx's ASGI transport runs no lifespan (which would migrate): readiness alone is under test.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        response = await http.get("/ready")
        assert response.status_code == 503
        assert "database unreachable" in response.json()["reason"]
        assert (await http.get("/health")).status_code == 200


async def test_openapi_documents_are_served(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url) as http:
        document = (await http.get("/schema/openapi.json")).json()
        assert document["info"]["title"] == "Tool Registry"
        assert "/ready" in document["paths"]
        assert (await http.get("/schema")).status_code == 200


async def test_metrics_label_requests_by_route_template_not_raw_url(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url) as http:
        await http.get("/health")
        await http.get("/no/such/path/12345")
    assert REGISTRY.get_sample_value("mcp_http_requests_total", {"method": "GET", "path": "/health", "status": "200"})
    assert REGISTRY.get_sample_value(
        "mcp_http_requests_total", {"method": "GET", "path": "<unmatched>", "status": "404"}
    )
    labels = {s.labels.get("path") for m in REGISTRY.collect() for s in m.samples if s.name.startswith("mcp_http")}
    assert "/no/such/path/12345" not in labels


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_mcp_lists_and_calls_tools_in_both_protocol_eras(registry_url: str, mode: str) -> None:
    async with Client(f"{registry_url}/mcp", mode=mode) as client:  # type: ignore[arg-type]
        tools = await client.list_tools()
        assert {"find_tools", "get_tool", "list_tools", "list_categories", "call_tool"} <= {
            tool.name for tool in tools.tools
        }
        result = await client.call_tool("list_categories", {})
        assert not result.is_error
        assert result.structured_content == {"categories": []}


async def test_mcp_2025_client_negotiates_a_handshake_version(registry_url: str) -> None:
    # A 2025-03-26 client: the oldest handshake version the platform promises to serve.
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with httpx.AsyncClient(base_url=registry_url) as http:
        response = await http.post("/mcp", json=body, headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code == 200
    assert response.json()["result"]["protocolVersion"] == "2025-03-26"


async def test_public_url_names_the_resource_whatever_host_a_request_claims() -> None:
    settings = RegistrySettings.from_env(
        {},
        database_url="postgresql://nobody:x@127.0.0.1:1/none",
        api_keys=["0" * 64],
        public_url="https://registry.example.com/",
        metrics_port=0,
    )
    app = build_app(settings)
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        metadata = (await http.get("/.well-known/oauth-protected-resource", headers=forged)).json()
        challenge = (await http.get("/api/v1/tools", headers=forged)).headers["www-authenticate"]
    assert metadata["resource"] == "https://registry.example.com"
    assert 'resource_metadata="https://registry.example.com/.well-known/oauth-protected-resource"' in challenge
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        RegistrySettings.from_env({"PUBLIC_URL": "registry.example.com"})
