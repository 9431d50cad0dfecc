"""The JWKS cache: max-age within bounds, rate-limited refresh on unknown kids, outages survived."""

from __future__ import annotations

from typing import Any

import httpx
from joserfc.jwk import ECKey, RSAKey

from platform_common.jwt import JwksCache, import_public_keys

KEY_A = RSAKey.generate_key(2048, parameters={"kid": "a"})
KEY_B = RSAKey.generate_key(2048, parameters={"kid": "b"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """A JWKS endpoint that counts its requests and can be taken down."""

    def __init__(self) -> None:
        self.keys: list[RSAKey] = [KEY_A]
        self.requests = 0
        self.down = False
        self.cache_control = "public, max-age=300"

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.down:
            return httpx.Response(503)
        body = {"keys": [key.as_dict(private=False) for key in self.keys]}
        return httpx.Response(200, json=body, headers={"Cache-Control": self.cache_control})


def cache_for(issuer: Issuer, clock: Clock) -> JwksCache:
    return JwksCache("http://issuer/jwks", clock=clock, transport=httpx.MockTransport(issuer.handler))


async def test_cached_for_max_age_then_refetched() -> None:
    issuer, clock = Issuer(), Clock()
    cache = cache_for(issuer, clock)
    assert await cache.key_for("a") is not None
    clock.now += 299
    assert await cache.key_for("a") is not None
    assert issuer.requests == 1
    clock.now += 2
    await cache.key_for("a")
    assert issuer.requests == 2


async def test_max_age_is_clamped() -> None:
    issuer, clock = Issuer(), Clock()
    issuer.cache_control = "max-age=0"
    cache = cache_for(issuer, clock)
    for _ in range(5):
        await cache.key_for("a")
    assert issuer.requests == 1  # at least min_age (60 s) between fetches, whatever the header says


async def test_unknown_kid_refreshes_at_most_once_per_interval() -> None:
    issuer, clock = Issuer(), Clock()
    cache = cache_for(issuer, clock)
    await cache.key_for("a")
    for i in range(50):
        assert await cache.key_for(f"made-up-{i}") is None
    assert issuer.requests == 1  # just fetched: nothing new to learn yet
    clock.now += 31
    for i in range(50):
        assert await cache.key_for(f"made-up-{i}") is None
    assert issuer.requests == 2  # one refresh for all fifty made-up kids
    issuer.keys.append(KEY_B)  # the issuer rotates
    clock.now += 31
    assert await cache.key_for("b") is not None
    assert issuer.requests == 3


async def test_issuer_down_keeps_the_cached_keys() -> None:
    issuer, clock = Issuer(), Clock()
    cache = cache_for(issuer, clock)
    await cache.key_for("a")
    issuer.down = True
    clock.now += 10_000
    assert await cache.key_for("a") is not None
    assert await cache.key_for("a") is not None
    assert issuer.requests == 2  # the failure is not retried on every request either


def test_only_plain_signing_keys_are_imported() -> None:
    weak = RSAKey.generate_key(1024, parameters={"kid": "weak"}, private=True)
    document: dict[str, Any] = {
        "keys": [
            KEY_A.as_dict(private=False),
            ECKey.generate_key("P-256", parameters={"kid": "ec"}).as_dict(private=False),
            ECKey.generate_key("P-384", parameters={"kid": "p384"}).as_dict(private=False),
            weak.as_dict(private=False),
            {**KEY_B.as_dict(private=False), "kid": "../b"},
            {**KEY_B.as_dict(private=False), "kid": "enc", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            "not a key",
        ]
    }
    assert set(import_public_keys(document)) == {"a", "ec"}
