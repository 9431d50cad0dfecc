"""The token issuer over HTTP, and the whole chain: ToT issues, the registry verifies via its JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from litestar import Litestar
from litestar.testing import AsyncTestClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from platform_common.http import ObservedApp
from tests.servers import free_port, running_server
from tool_registry.app import build_app as build_registry
from tool_registry.config import RegistrySettings
from tree_of_thoughts.app import build_app as build_tot
from tree_of_thoughts.config import TotSettings

SECRET = "s3cret-for-tests"
CLIENTS = json.dumps(
    [
        {
            "client_id": "agent",
            "secret_sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
            "scopes": ["registry:read", "registry:call", "tot:run"],
            "audiences": ["tool-registry", "tree-of-thoughts"],
        },
    ]
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def tot_settings(tmp_path: Path, **overrides: Any) -> TotSettings:
    return TotSettings.from_env(
        {}, data_dir=str(tmp_path), oauth_clients=CLIENTS, metrics_port=0, rate_limit_per_minute=0, **overrides
    )


def basic(client_id: str = "agent", secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture
async def tot(tmp_path: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(build_tot(tot_settings(tmp_path, issuer_url="https://tot.example"))) as http:
        yield http


async def test_client_credentials_by_basic_and_by_form(tot: AsyncTestClient[Litestar]) -> None:
    by_basic = await tot.post(
        "/oauth/token", content="grant_type=client_credentials&scope=registry:read", headers={**FORM, **basic()}
    )
    assert by_basic.status_code == 200, by_basic.text
    assert by_basic.headers["cache-control"] == "no-store"
    body = by_basic.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "registry:read" and body["expires_in"] == 86400
    by_form = await tot.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": "agent", "client_secret": SECRET}
    )
    assert by_form.json()["scope"] == "registry:call registry:read tot:run"  # no scope asked: all allowed

    claims = jwt.decode(body["access_token"], _jwks_key(await tot.get("/.well-known/jwks.json"))).claims
    assert claims["iss"] == "https://tot.example" and claims["sub"] == "agent" and claims["aud"] == "tool-registry"
    assert claims["exp"] - claims["iat"] == 86400 and claims["nbf"] == claims["iat"] and claims["jti"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        ("grant_type=client_credentials", basic(secret="wrong"), 401, "invalid_client"),
        ("grant_type=client_credentials", basic(client_id="nobody"), 401, "invalid_client"),
        ("grant_type=client_credentials&client_id=agent&client_secret=nope", {}, 401, "invalid_client"),
        ("grant_type=client_credentials", {}, 401, "invalid_client"),
        ("grant_type=password", basic(), 400, "unsupported_grant_type"),
        ("grant_type=client_credentials&scope=registry:write", basic(), 400, "invalid_scope"),
        ("grant_type=client_credentials&audience=elsewhere", basic(), 400, "invalid_target"),
        ("grant_type=client_credentials&grant_type=client_credentials", basic(), 400, "invalid_request"),
    ],
)
async def test_token_errors_are_rfc6749(
    tot: AsyncTestClient[Litestar], body: str, headers: dict[str, str], status: int, error: str
) -> None:
    response = await tot.post("/oauth/token", content=body, headers={**FORM, **headers})
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"
    assert SECRET not in response.text


async def test_json_bodies_are_refused(tot: AsyncTestClient[Litestar]) -> None:
    response = await tot.post("/oauth/token", json={"grant_type": "client_credentials"}, headers=basic())
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


async def test_jwks_caching_and_discovery_documents(tot: AsyncTestClient[Litestar]) -> None:
    jwks = await tot.get("/.well-known/jwks.json")
    assert jwks.headers["cache-control"] == "public, max-age=3600"
    key = jwks.json()["keys"][0]
    assert key["alg"] == "RS256" and key["use"] == "sig" and "d" not in key
    assert key["kid"] == RSAKey.import_key(key).thumbprint()  # RFC 7638
    again = await tot.get("/.well-known/jwks.json", headers={"If-None-Match": jwks.headers["etag"]})
    assert again.status_code == 304
    metadata = (await tot.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == "https://tot.example"
    assert metadata["token_endpoint"] == "https://tot.example/oauth/token"
    assert metadata["jwks_uri"] == "https://tot.example/.well-known/jwks.json"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    resource = (await tot.get("/.well-known/oauth-protected-resource")).json()
    assert resource["resource"] == "https://tot.example" and resource["authorization_servers"] == [
        "https://tot.example"
    ]


async def test_tot_verifies_its_own_tokens_in_process(tot: AsyncTestClient[Litestar]) -> None:
    token = await tot.post(
        "/oauth/token", content="grant_type=client_credentials&resource=tree-of-thoughts", headers={**FORM, **basic()}
    )
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (await tot.post("/mcp", json={}, headers=bearer)).status_code != 401
    # A token minted for the registry (the client's default audience) is no key to ToT.
    for_registry = await tot.post("/oauth/token", content="grant_type=client_credentials", headers={**FORM, **basic()})
    other = {"Authorization": f"Bearer {for_registry.json()['access_token']}"}
    assert (await tot.post("/mcp", json={}, headers=other)).status_code == 401
    for attack in _attacks(token.json()["access_token"]):
        response = await tot.post("/mcp", json={}, headers={"Authorization": f"Bearer {attack}"})
        assert response.status_code == 401


def _jwks_key(response: httpx.Response) -> RSAKey:
    return RSAKey.import_key(response.json()["keys"][0])


def _attacks(real: str) -> list[str]:
    """Forgeries a client holding one real token could try."""
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    foreign = RSAKey.generate_key(2048)
    now = int(time.time())
    claims = {"iss": "x", "sub": "agent", "aud": "mcp-platform", "exp": now + 60, "scope": "registry:write"}
    none = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": header["kid"]}).encode()).decode().rstrip("=")
    payload = real.split(".")[1]
    return [
        jwt.encode({"alg": "RS256", "kid": header["kid"]}, claims, foreign),  # our kid, their key
        f"{none}.{payload}.",
        f"{real.split('.')[0]}.{payload[:-4]}AAAA.{real.split('.')[2]}",  # tampered
        real + "x",
        "x" * 9000,
    ]


async def test_end_to_end_tot_issues_and_the_registry_verifies_over_jwks(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    tot_url = f"http://127.0.0.1:{port}"
    tot_app = ObservedApp(build_tot(tot_settings(tmp_path, port=port, issuer_url=tot_url)))
    registry_settings = RegistrySettings.from_env(
        {},
        database_url=database_url,
        metrics_port=0,
        auth_jwks_url=f"{tot_url}/.well-known/jwks.json",
        auth_issuer=tot_url,
        rate_limit_per_minute=0,
    )
    with running_server(ObservedApp(build_registry(registry_settings))) as registry_url:
        with running_server(tot_app, port=port):
            async with httpx.AsyncClient() as http:
                issued = await http.post(
                    f"{tot_url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("agent", SECRET)
                )
            token = issued.json()["access_token"]
            await _mcp_works(registry_url, token)
            async with httpx.AsyncClient() as http:
                for_tot = await http.post(
                    f"{tot_url}/oauth/token",
                    data={"grant_type": "client_credentials", "audience": "tree-of-thoughts"},
                    auth=("agent", SECRET),
                )
                # Same issuer, same keys, another service's audience: refused.
                refused = await http.post(
                    f"{registry_url}/mcp",
                    json={},
                    headers={"Authorization": f"Bearer {for_tot.json()['access_token']}"},
                )
                assert refused.status_code == 401
        # The issuer is gone now: the registry keeps verifying with its cached key set.
        await _mcp_works(registry_url, token)
        async with httpx.AsyncClient(base_url=registry_url) as http:
            anonymous = await http.post("/mcp", json={})
            assert anonymous.status_code == 401
            assert anonymous.headers["www-authenticate"] == (
                f'Bearer realm="mcp-platform", resource_metadata="{registry_url}/.well-known/oauth-protected-resource"'
            )
            for attack in _attacks(token):
                response = await http.post("/mcp", json={}, headers={"Authorization": f"Bearer {attack}"})
                assert response.status_code == 401, response.text
            metadata = (await http.get("/.well-known/oauth-protected-resource")).json()
            assert metadata["authorization_servers"] == [tot_url]
            assert metadata["scopes_supported"] == [
                "registry:audit",
                "registry:call",
                "registry:read",
                "registry:write",
            ]


async def _mcp_works(url: str, token: str) -> None:
    http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    async with http_client, Client(streamable_http_client(f"{url}/mcp", http_client=http_client)) as client:
        tools = await client.list_tools()
        assert tools.tools  # authenticated: the registry lists its tools
