"""MCP fails closed: metadata needs a scope, and a loopback server refuses rebinding Host and Origin headers."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from platform_common.http import ObservedApp
from tests.registry.conftest import settings_for, tool
from tests.servers import free_port, running_server
from tool_registry.app import build_app as build_registry
from tree_of_thoughts.app import build_app as build_tot
from tree_of_thoughts.config import TotSettings

API_KEY = "fail-closed-admin-key"
SCOPES = {"reader": "registry:read tot:read", "caller": "registry:call tot:run"}


def clients() -> str:
    return json.dumps(
        [
            {
                "client_id": name,
                "secret_sha256": hashlib.sha256(f"{name}-secret".encode()).hexdigest(),
                "scopes": scopes.split(),
                "audiences": ["tool-registry", "tree-of-thoughts"],
            }
            for name, scopes in SCOPES.items()
        ]
    )


@pytest.fixture
def platform(database_url: str) -> Iterator[tuple[str, str]]:
    """A real ToT (the issuer) and a real registry verifying its tokens; both on loopback."""
    port = free_port()
    tot_url = f"http://127.0.0.1:{port}"
    tot_settings = TotSettings.from_env(
        {},
        port=port,
        issuer_url=tot_url,
        oauth_clients=clients(),
        data_dir=tempfile.mkdtemp(),
        metrics_port=0,
        rate_limit_per_minute=0,
    )
    registry_settings = settings_for(
        database_url,
        auth_mode="jwt",
        auth_jwks_url=f"{tot_url}/.well-known/jwks.json",
        auth_issuer=tot_url,
        api_keys=[hashlib.sha256(API_KEY.encode()).hexdigest()],
        rate_limit_per_minute=0,
    )
    with (
        running_server(ObservedApp(build_tot(tot_settings)), port=port),
        running_server(ObservedApp(build_registry(registry_settings))) as registry_url,
    ):
        yield tot_url, registry_url


def mint(tot_url: str, client: str, audience: str) -> str:
    response = httpx.post(
        f"{tot_url}/oauth/token",
        data={"grant_type": "client_credentials", "audience": audience},
        auth=(client, f"{client}-secret"),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def session_call(url: str, token: str, action: str, *args: Any) -> Any:
    http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with http_client, Client(streamable_http_client(f"{url}/mcp", http_client=http_client)) as client:
        try:
            return await getattr(client, action)(*args)
        except MCPError as exc:  # a JSON-RPC error answer: returned, so the session closes cleanly
            return exc


async def test_metadata_tools_and_resources_need_a_read_scope(platform: tuple[str, str]) -> None:
    tot_url, registry_url = platform
    admin = {"X-API-Key": API_KEY}
    created = httpx.post(f"{registry_url}/api/v1/tools", json=tool("x.y", category="secret-project"), headers=admin)
    assert created.status_code == 201, created.text
    reader, caller = mint(tot_url, "reader", "tool-registry"), mint(tot_url, "caller", "tool-registry")

    # Before: tools/list put live category names in find_tools' description for any token.
    listed = await session_call(registry_url, reader, "list_tools")
    assert "secret-project" in next(t.description for t in listed.tools if t.name == "find_tools")
    listed = await session_call(registry_url, caller, "list_tools")
    assert "secret-project" not in next(t.description for t in listed.tools if t.name == "find_tools")
    refused = await session_call(registry_url, caller, "read_resource", "registry://categories")
    assert isinstance(refused, MCPError) and "registry:read" in str(refused)

    # Before: list_strategies answered any token, whatever its scopes.
    denied = await session_call(
        tot_url, mint(tot_url, "caller", "tree-of-thoughts"), "call_tool", "list_strategies", {}
    )
    assert denied.is_error and "tot:read" in denied.content[0].text
    allowed = await session_call(
        tot_url, mint(tot_url, "reader", "tree-of-thoughts"), "call_tool", "list_strategies", {}
    )
    assert not allowed.is_error


MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def test_a_loopback_server_refuses_rebinding_hosts_and_foreign_origins() -> None:
    # Before: with MCP_ALLOWED_HOSTS empty the Host/Origin check was off, so a web page whose name
    # resolves to 127.0.0.1 could drive a local AUTH_MODE=none server from the user's browser.
    port = free_port()
    settings = TotSettings.from_env({}, auth_mode="none", port=port, metrics_port=0, data_dir=tempfile.mkdtemp())
    with running_server(ObservedApp(build_tot(settings)), port=port) as url:

        def post(**headers: str) -> int:
            return httpx.post(f"{url}/mcp", json=PING, headers={**MCP_HEADERS, **headers}).status_code

        assert post() == 200
        assert post(host=f"localhost:{port}", origin=f"http://localhost:{port}") == 200
        assert post(host=f"evil.example:{port}") == 421
        assert post(host="evil.example") == 421
        assert post(origin="http://evil.example") == 403
        assert post(origin="http://localhost:3000") == 403  # another local web app


def test_listed_hosts_replace_the_loopback_default() -> None:
    port = free_port()
    settings = TotSettings.from_env(
        {}, auth_mode="none", port=port, metrics_port=0, data_dir=tempfile.mkdtemp(), mcp_allowed_hosts=["tot.test"]
    )
    with running_server(ObservedApp(build_tot(settings)), port=port) as url:
        assert httpx.post(f"{url}/mcp", json=PING, headers={**MCP_HEADERS, "host": "tot.test"}).status_code == 200
        assert httpx.post(f"{url}/mcp", json=PING, headers=MCP_HEADERS).status_code == 421
