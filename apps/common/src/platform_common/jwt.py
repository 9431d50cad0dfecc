"""Bearer JWT verification against a JWKS, with a cache that survives the issuer being down.

The token's header is attacker-controlled, so nothing in it chooses how we verify: the algorithm
must be one of ``RS256``/``ES256`` and must match the type of the key we already hold under that
``kid`` (an RSA public key never doubles as an HMAC secret), and a ``kid`` is only ever a
dictionary lookup of a short plain token, never a path or URL. Claims are checked after the
signature: ``iss``, ``aud``, ``exp``/``nbf`` with a small leeway, ``iat`` not in the future.

Failures raise ``InvalidToken`` whose message is a fixed reason (safe to log; never the token).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeGuard

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

logger = logging.getLogger(__name__)

ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}  # accepted alg → the key type it requires
MAX_TOKEN_BYTES = 8192
LEEWAY_SECONDS = 30
# Tokens are short-lived; an iat further in the past than this is a replay or a broken issuer.
MAX_TOKEN_AGE_SECONDS = 31 * 24 * 3600
_KID = re.compile(r"[A-Za-z0-9_\-.]{1,128}")
_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")
_MIN_RSA_BITS = 2048

PublicKey = RSAKey | ECKey


class InvalidToken(Exception):
    """The bearer token is not acceptable; ``str(exc)`` is a fixed reason, safe for logs."""


class KeySource(Protocol):
    """Where verification keys come from: a JWKS over HTTP, or the issuer's own key manager."""

    async def key_for(self, kid: str) -> PublicKey | None:
        """The verification key for ``kid``, or ``None`` when there is none."""
        ...


def is_plain_kid(kid: object) -> TypeGuard[str]:
    """A key id we will look up: a short string of URL-safe characters, nothing else."""
    return isinstance(kid, str) and _KID.fullmatch(kid) is not None and ".." not in kid


def import_public_keys(document: Mapping[str, Any]) -> dict[str, PublicKey]:
    """The usable signing keys of a JWKS document, by ``kid``; anything odd is skipped, not trusted."""
    keys: dict[str, PublicKey] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS has no 'keys' list")
    for entry in entries:
        key = _import_public_key(entry)
        if key is not None:
            keys[entry["kid"]] = key
    return keys


def _import_public_key(entry: object) -> PublicKey | None:
    if not isinstance(entry, dict) or not is_plain_kid(entry.get("kid")):
        return None
    if entry.get("use", "sig") != "sig" or any(name in entry for name in ("d", "p", "q", "k")):
        return None  # encryption keys, private material and symmetric keys have no place here
    public = {k: v for k, v in entry.items() if k in ("kty", "n", "e", "crv", "x", "y", "kid")}
    try:
        if entry.get("kty") == "RSA":
            modulus = base64.urlsafe_b64decode(str(entry.get("n", "")) + "==")
            return RSAKey.import_key(public) if len(modulus.lstrip(b"\0")) * 8 >= _MIN_RSA_BITS else None
        if entry.get("kty") == "EC" and entry.get("crv") == "P-256":
            return ECKey.import_key(public)
    except (JoseError, ValueError, TypeError, binascii.Error):
        return None
    return None


class JwksCache:
    """A JWKS fetched over HTTP and kept in memory.

    Refreshed when its ``max-age`` (clamped to ``[min_age, max_age]``) has passed, and on an
    unknown ``kid`` (a rotation) at most once per ``refresh_interval`` so that tokens with made-up
    kids cannot turn us into a flood against the issuer. A failed refresh keeps the previous key
    set: a short issuer outage must not lock every caller out.
    """

    def __init__(
        self,
        url: str,
        *,
        min_age: float = 60,
        max_age: float = 86400,
        refresh_interval: float = 30,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.min_age, self.max_age, self.refresh_interval = min_age, max_age, refresh_interval
        self._timeout = timeout
        self._clock = clock
        self._transport = transport
        self._keys: dict[str, PublicKey] = {}
        self._expires_at = float("-inf")
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str) -> PublicKey | None:
        if self._needs_refresh(kid):
            await self._refresh(kid)
        return self._keys.get(kid)

    def _needs_refresh(self, kid: str) -> bool:
        """Expired (max-age bounds how long a revoked key verifies), or an unknown kid not asked about lately.

        Only the unknown-kid path is rate limited: expiry happens once per max-age whatever callers send.
        """
        now = self._clock()
        return now >= self._expires_at or (kid not in self._keys and now - self._last_attempt >= self.refresh_interval)

    async def _refresh(self, kid: str) -> None:
        async with self._lock:
            if not self._needs_refresh(kid):
                return  # another request refreshed (or failed to) while we waited
            now = self._clock()
            self._last_attempt = now
            try:
                keys, age = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                # Keep the last good keys; retry no sooner than refresh_interval from now.
                logger.warning(
                    "JWKS refresh from %s failed (%s); keeping %d cached keys",
                    self.url,
                    type(exc).__name__,
                    len(self._keys),
                )
                self._expires_at = now + self.refresh_interval
                return
            self._keys = keys
            self._expires_at = now + age

    async def _fetch(self) -> tuple[dict[str, PublicKey], float]:
        async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as client:
            response = await client.get(self.url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > 256 * 1024:
            raise ValueError("JWKS document too large")
        return import_public_keys(response.json()), self._age(response.headers.get("cache-control", ""))

    def _age(self, cache_control: str) -> float:
        match = re.search(r"max-age=(\d+)", cache_control)
        age = float(match.group(1)) if match else self.min_age
        return min(self.max_age, max(self.min_age, age))


class StaticKeys:
    """A fixed key set (tests, and the ``tot token`` CLI's self-check)."""

    def __init__(self, keys: Mapping[str, PublicKey]) -> None:
        self._keys = dict(keys)

    async def key_for(self, kid: str) -> PublicKey | None:
        return self._keys.get(kid)


class JwtVerifier:
    """Verify compact JWS bearer tokens; returns the claims of a good one, raises ``InvalidToken``."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        leeway: int = LEEWAY_SECONDS,
        max_token_bytes: int = MAX_TOKEN_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("a JWT verifier needs an issuer and an audience")
        self.keys, self.issuer, self.audience = keys, issuer, audience
        self.leeway, self.max_token_bytes, self._clock = leeway, max_token_bytes, clock

    async def verify(self, token: str) -> dict[str, Any]:
        header_b64, payload_b64 = self._split(token)
        header = _json_segment(header_b64, "header")
        alg, kid = header.get("alg"), header.get("kid")
        # Decide everything from our own key before any cryptography: alg is only checked, never obeyed.
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise InvalidToken("unsupported algorithm")
        if "crit" in header or "jku" in header or "x5u" in header or "jwk" in header:
            raise InvalidToken("unsupported header parameter")
        if not is_plain_kid(kid):
            raise InvalidToken("missing or malformed kid")
        key = await self.keys.key_for(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        if key.key_type != ALGORITHMS[alg]:
            raise InvalidToken("algorithm does not match the key")
        try:
            jws.deserialize_compact(token, key, algorithms=[alg])
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("bad signature") from None
        claims = _json_segment(payload_b64, "payload")
        self._check_claims(claims)
        return claims

    def _split(self, token: str) -> tuple[str, str]:
        if len(token) > self.max_token_bytes:
            raise InvalidToken("token too large")
        parts = token.split(".")
        if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
            raise InvalidToken("not a compact JWS")
        return parts[0], parts[1]

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise InvalidToken("wrong audience")
        exp, nbf, iat = (_number(claims, name) for name in ("exp", "nbf", "iat"))
        if exp is None or now > exp + self.leeway:
            raise InvalidToken("expired")
        if nbf is not None and now + self.leeway < nbf:
            raise InvalidToken("not yet valid")
        if iat is not None and (now + self.leeway < iat or now - iat > MAX_TOKEN_AGE_SECONDS):
            raise InvalidToken("implausible iat")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("missing subject")
        if "scope" in claims and not isinstance(claims["scope"], str):
            raise InvalidToken("malformed scope")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim, ``None`` when absent; any other type is a malformed token."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"malformed {name}")
    return float(value)


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidToken(f"malformed {what}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed {what}")
    return value
