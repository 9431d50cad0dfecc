"""Fail closed: no principal is no rights, AUTH_MODE=none stays on loopback, a JWKS is trusted for a bounded time."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from litestar import Request, get
from litestar.testing import AsyncTestClient

from platform_common.auth import build_auth, principal_of, require_scopes
from platform_common.http import create_app
from platform_common.jwt import JwksCache
from platform_common.settings import BaseSettings, SettingsError


async def test_a_guarded_route_without_the_auth_middleware_is_401_not_anonymous() -> None:
    # Before: principal_of fell back to an anonymous principal holding every scope.
    @get("/things", guards=[require_scopes("registry:read")])
    async def things(request: Request[Any, Any, Any]) -> dict[str, str]:
        return {"subject": principal_of(request).subject}

    @get("/whoami")
    async def whoami(request: Request[Any, Any, Any]) -> dict[str, str]:
        return {"subject": principal_of(request).subject}

    async with AsyncTestClient(create_app(route_handlers=[things, whoami])) as http:
        for path in ("/things", "/whoami"):
            response = await http.get(path)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "tot.example.com"])  # noqa: S104 (the attack)
def test_auth_mode_none_refuses_a_non_loopback_host(host: str) -> None:
    with pytest.raises(SettingsError, match="AUTH_NONE_ALLOW_NON_LOOPBACK"):
        BaseSettings.from_env({"AUTH_MODE": "none", "HOST": host})
    allowed = BaseSettings.from_env({"AUTH_MODE": "none", "HOST": host, "AUTH_NONE_ALLOW_NON_LOOPBACK": "true"})
    assert allowed.host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_auth_mode_none_runs_on_loopback(host: str) -> None:
    assert BaseSettings.from_env({"AUTH_MODE": "none", "HOST": host}).auth_mode == "none"


def test_auth_mode_jwt_runs_on_any_interface() -> None:
    assert BaseSettings.from_env({"HOST": "0.0.0.0"}).host == "0.0.0.0"  # noqa: S104


def test_the_jwks_is_trusted_no_longer_than_auth_jwks_max_age_seconds() -> None:
    # An issuer's max-age of an hour must not keep a revoked key verifying here for an hour.
    settings = BaseSettings.from_env(
        {}, auth_jwks_url="http://issuer/jwks", auth_issuer="http://issuer", auth_jwks_max_age_seconds=20
    )
    cache = build_auth(settings, scopes_supported=[]).authenticator.verifier
    assert cache is not None and isinstance(cache.keys, JwksCache)
    assert cache.keys._age("public, max-age=3600") == 20
    assert BaseSettings.from_env({}).auth_jwks_max_age_seconds == 300


async def test_an_expired_jwks_is_refetched_even_right_after_an_unknown_kid_refresh() -> None:
    # Before: any refresh within 30 s of the last one was skipped, so a key revoked at the issuer
    # kept verifying up to 30 s past AUTH_JWKS_MAX_AGE_SECONDS.
    published = [RSAKey.generate_key(2048, parameters={"kid": "leaked"})]
    now = [100.0]

    def issuer(_: httpx.Request) -> httpx.Response:
        keys = [key.as_dict(private=False) for key in published]
        return httpx.Response(200, json={"keys": keys}, headers={"Cache-Control": "max-age=3600"})

    cache = JwksCache(
        "http://issuer/jwks", min_age=2, max_age=2, clock=lambda: now[0], transport=httpx.MockTransport(issuer)
    )
    assert await cache.key_for("leaked") is not None
    now[0] += 1.5
    assert await cache.key_for("made-up") is None  # an unknown kid within 30 s: not refetched
    published.clear()  # revoked at the issuer
    now[0] += 2.1  # the copy fetched 2.1 s ago has expired
    assert await cache.key_for("leaked") is None
