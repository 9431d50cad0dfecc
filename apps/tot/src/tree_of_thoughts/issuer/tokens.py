"""Signing access tokens (RS256, ``kid`` = RFC 7638 thumbprint of the signing key)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable

from joserfc import jwt

from tree_of_thoughts.issuer.manager import KeyManager


class TokenIssuer:
    def __init__(
        self,
        keys: KeyManager,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys, self.issuer, self.audience, self.ttl_seconds = keys, issuer, audience, ttl_seconds
        self._clock = clock

    def issue(
        self, subject: str, scopes: Iterable[str], *, audience: str | None = None, ttl_seconds: float | None = None
    ) -> tuple[str, int]:
        """A signed token and its lifetime in seconds."""
        kid, key = self.keys.signing_key()
        now = int(self._clock())
        lifetime = int(ttl_seconds if ttl_seconds is not None else self.ttl_seconds)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience or self.audience,
            "scope": " ".join(sorted(set(scopes))),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode({"alg": "RS256", "kid": kid}, claims, key, algorithms=["RS256"]), lifetime
