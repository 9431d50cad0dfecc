"""Bearer-token verification and the auth layer: every attack is a 401/403, never a 500, never echoed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from litestar import Litestar, Request, get
from litestar.testing import AsyncTestClient

from platform_common.auth import ANONYMOUS, build_auth, hash_api_key, principal_of, require_scopes
from platform_common.health import health_controller
from platform_common.http import create_app
from platform_common.jwt import StaticKeys
from platform_common.mcp import McpApp
from platform_common.settings import BaseSettings, SettingsError

ISSUER = "https://issuer.test"
AUDIENCE = "mcp-platform"
RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
API_KEY = "bootstrap-key-123"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-7",
        "scope": "registry:read tot:run",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, Any] | None = None, *, key: RSAKey | ECKey = RSA, alg: str = "RS256", kid: str | None = None
) -> str:
    header = {"alg": alg, "kid": kid or key.kid}
    return jwt.encode(header, payload or claims(), key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


def make_app(**settings: Any) -> Litestar:
    config = BaseSettings.from_env({}, **{"auth_issuer": ISSUER, **settings})
    auth = build_auth(
        config,
        scopes_supported=["registry:read"],
        key_source=StaticKeys({"rsa-1": RSA, "ec-1": EC}),
        api_keys=[hash_api_key(API_KEY)],
        api_key_scopes=frozenset({"registry:read"}),
    )

    @get("/things", guards=[require_scopes("registry:read")])
    async def things(request: Request[Any, Any, Any]) -> dict[str, str]:
        return {"subject": principal_of(request).subject}

    @get("/admin", guards=[require_scopes("registry:write")])
    async def admin() -> dict[str, str]:
        return {}

    mcp = McpApp(name="t", version="1", instructions="")
    return create_app(
        route_handlers=[
            things,
            admin,
            health_controller({}),
            mcp.route(authenticate=auth.authenticate_scope),
            *auth.route_handlers,
        ],
        middleware=auth.middleware,
        lifespan=[mcp.lifespan],
    )


@pytest.fixture
async def client() -> Any:
    async with AsyncTestClient(make_app(rate_limit_per_minute=0)) as http:
        yield http


async def test_valid_rs256_and_es256_tokens_give_the_principal(client: AsyncTestClient[Litestar]) -> None:
    for token in (sign(), sign(key=EC, alg="ES256")):
        response = await client.get("/things", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        assert response.json() == {"subject": "agent-7"}


def _attacks() -> dict[str, str]:
    now = int(time.time())
    good = sign()
    header, payload, signature = good.split(".")
    tampered_claims = claims(scope="registry:read registry:write")
    rsa_public_pem = RSA.as_pem(private=False)
    hs_header = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    hs_payload = b64(json.dumps(claims()).encode())
    hs_sig = hmac.new(rsa_public_pem, f"{hs_header}.{hs_payload}".encode(), hashlib.sha256).digest()
    return {
        "alg none": forged({"alg": "none", "kid": "rsa-1"}, claims(), b""),
        "alg none with a signature": forged({"alg": "none", "kid": "rsa-1"}, claims()),
        "HS256 with the RSA public key as secret": f"{hs_header}.{hs_payload}.{b64(hs_sig)}",
        "RS256 header on the EC key": forged({"alg": "RS256", "kid": "ec-1"}, claims()),
        "unknown kid": sign(kid="nope"),
        "kid path traversal": forged({"alg": "RS256", "kid": "../../../etc/passwd"}, claims()),
        "kid URL": forged({"alg": "RS256", "kid": "http://evil.test/jwks"}, claims()),
        "jku header": forged({"alg": "RS256", "kid": "rsa-1", "jku": "http://evil.test"}, claims()),
        "expired": sign(claims(exp=now - 120, iat=now - 700, nbf=now - 700)),
        "future nbf": sign(claims(nbf=now + 300)),
        "future iat": sign(claims(iat=now + 3600)),
        "wrong iss": sign(claims(iss="https://evil.test")),
        "wrong aud": sign(claims(aud="other-service")),
        "no exp": sign(claims(exp=None)),
        "string exp": sign(claims(exp="never")),
        "tampered payload": f"{header}.{b64(json.dumps(tampered_claims).encode())}.{signature}",
        "oversized": sign(claims(pad="x" * 9000)),
        "garbage": "abc.def.ghi",
        "not base64": "%%%.***.!!!",
        "json array header": f"{b64(b'[1]')}.{payload}.{signature}",
    }


@pytest.mark.parametrize("attack", list(_attacks()))
async def test_attacks_are_401_without_echoing_the_token(
    client: AsyncTestClient[Litestar], attack: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = _attacks()[attack]
    caplog.set_level(logging.DEBUG)
    for path in ("/things", "/mcp"):
        response = (
            await client.post(path, headers={"Authorization": f"Bearer {token}"}, json={})
            if path == "/mcp"
            else await client.get(path, headers={"Authorization": f"Bearer {token}"})
        )
        assert response.status_code == 401, (attack, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="mcp-platform"') and 'error="invalid_token"' in challenge
        assert token not in response.text and token[-20:] not in response.text
    assert all(token[-20:] not in record.getMessage() for record in caplog.records)


async def test_missing_token_gets_a_challenge_pointing_at_resource_metadata(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/things")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer realm="mcp-platform", resource_metadata="http://testserver.local/.well-known/oauth-protected-resource"'
    )
    assert (await client.get("/things", headers={"Authorization": "Basic dXNlcjpwdw=="})).status_code == 401


async def test_missing_scope_is_403(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/admin", headers={"Authorization": f"Bearer {sign()}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_api_keys_by_bearer_or_header_and_wrong_ones(client: AsyncTestClient[Litestar]) -> None:
    for headers in ({"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}):
        response = await client.get("/things", headers=headers)
        assert response.status_code == 200
        assert response.json()["subject"] == f"api-key:{hash_api_key(API_KEY)[:12]}"
    for headers in ({"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "x" * 5000}):
        response = await client.get("/things", headers=headers)
        assert response.status_code == 401
        assert "wrong" not in response.text


async def test_public_paths_need_no_token(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/schema/openapi.json")).status_code == 200
    metadata = (await client.get("/.well-known/oauth-protected-resource")).json()
    assert metadata == {
        "resource": "http://testserver.local",
        "authorization_servers": [ISSUER],
        "scopes_supported": ["registry:read"],
        "bearer_methods_supported": ["header"],
    }


async def test_the_mcp_hook_alone_answers_401_not_500() -> None:
    # Without the middleware in front, authenticate_scope itself must produce the 401.
    config = BaseSettings.from_env({}, auth_issuer=ISSUER)
    auth = build_auth(config, scopes_supported=[], key_source=StaticKeys({"rsa-1": RSA}))
    mcp = McpApp(name="t", version="1", instructions="")
    app = create_app(route_handlers=[mcp.route(authenticate=auth.authenticate_scope)], lifespan=[mcp.lifespan])
    async with AsyncTestClient(app) as http:
        response = await http.post("/mcp", json={}, headers={"Authorization": "Bearer a.b.c"})
        assert response.status_code == 401
        assert "invalid_token" in response.headers["www-authenticate"]
        assert (await http.post("/mcp", json={})).status_code == 401


async def test_rate_limit_is_per_principal_with_retry_after_and_spares_probes() -> None:
    async with AsyncTestClient(make_app(rate_limit_per_minute=3)) as http:
        token = {"Authorization": f"Bearer {sign()}"}
        statuses = [(await http.get("/things", headers=token)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await http.get("/things", headers=token)
        assert limited.headers["retry-after"] == "20"
        assert limited.headers["content-type"].startswith("application/problem+json")
        # Another principal from the same address is not affected; probes never are.
        assert (await http.get("/things", headers={"X-API-Key": API_KEY})).status_code == 200
        assert [(await http.get("/health")).status_code for _ in range(10)] == [200] * 10
        # Failed authentication counts against the client address.
        failures = [(await http.get("/things")).status_code for _ in range(4)]
        assert failures == [401, 401, 401, 429]


async def test_auth_mode_none_is_anonymous_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with AsyncTestClient(make_app(auth_mode="none", rate_limit_per_minute=0)) as http:
        response = await http.get("/things")
    assert response.json() == {"subject": ANONYMOUS.subject}
    assert any("AUTH_MODE=none" in record.getMessage() for record in caplog.records)


def test_jwt_mode_without_any_credential_source_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match="AUTH_JWKS_URL"):
        build_auth(BaseSettings.from_env({}), scopes_supported=[])
    with pytest.raises(SettingsError, match="AUTH_ISSUER"):
        build_auth(BaseSettings.from_env({}, auth_jwks_url="http://x/jwks"), scopes_supported=[])
    with pytest.raises(SettingsError, match="digests"):
        build_auth(BaseSettings.from_env({}), scopes_supported=[], api_keys=["plain-key"])
    assert build_auth(BaseSettings.from_env({}), scopes_supported=[], api_keys=[hash_api_key("k")])
