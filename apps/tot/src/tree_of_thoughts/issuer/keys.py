"""Signing keys: the key ring, when to rotate, which keys the JWKS publishes, and the manager.

A new key is *published* (in the JWKS) ``publish_delay`` before it starts *signing*: by the time
the first token carries its kid, every replica has reloaded the ring and every verifier's cached
JWKS (max-age) already holds it. A key stops signing when its successor activates and stays
published for ``overlap`` after that, longer than any token it signed can live.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from joserfc.jwk import RSAKey
from prometheus_client import Gauge

from platform_common.settings import SettingsError

logger = logging.getLogger(__name__)

RELOAD_SECONDS = 60.0  # how often every replica re-reads the ring (and rotates when due)
UNKNOWN_KID_RELOAD_SECONDS = 30.0  # at most this often, an unknown kid triggers an early reload
RSA_BITS = 2048

KEY_CREATED = Gauge(
    "mcp_jwt_key_created_timestamp",
    "Unix time at which the newest signing key (active or pre-published) was created.",
    multiprocess_mode="max",
)


class KeyRecord(msgspec.Struct, frozen=True):
    """One RSA key pair as stored (the private JWK is secret: it lives only in the key store)."""

    kid: str
    private_jwk: dict[str, Any]
    created_at: float
    activates_at: float


class KeyRing(msgspec.Struct, frozen=True):
    keys: list[KeyRecord] = msgspec.field(default_factory=list)
    version: int = 1


@dataclass(frozen=True)
class KeyPolicy:
    """Rotation timing, all in seconds."""

    rotation: float
    overlap: float
    publish_delay: float

    @classmethod
    def from_settings(
        cls, *, rotation_hours: float, overlap_hours: float, token_hours: float, jwks_max_age: int
    ) -> KeyPolicy:
        """Refuse timings under which a valid token could outlive its key's presence in the JWKS."""
        policy = cls(rotation_hours * 3600, overlap_hours * 3600, jwks_max_age + RELOAD_SECONDS)
        needed = token_hours * 3600 + jwks_max_age
        if policy.overlap < needed:
            raise SettingsError(
                f"KEY_OVERLAP_HOURS={overlap_hours:g} is too short: a retired key must stay in the JWKS "
                f"at least JWT_EXPIRATION_HOURS + JWKS_CACHE_MAX_AGE = {needed / 3600:g} h, or tokens "
                "would stop verifying before they expire"
            )
        if policy.rotation <= 2 * policy.publish_delay:
            raise SettingsError(
                f"KEY_ROTATION_HOURS={rotation_hours:g} is too short: it must exceed twice "
                f"JWKS_CACHE_MAX_AGE + {RELOAD_SECONDS:g} s, the time a new key is published before use"
            )
        return policy

    def signing(self, ring: KeyRing, now: float) -> KeyRecord | None:
        active = [key for key in ring.keys if key.activates_at <= now]
        return max(active, key=lambda key: key.activates_at, default=None)

    def published(self, ring: KeyRing, now: float) -> list[KeyRecord]:
        """Keys a verifier may need: pending, signing, and retired within the overlap."""
        ordered = sorted(ring.keys, key=lambda key: key.activates_at)
        kept = []
        for index, key in enumerate(ordered):
            successor = ordered[index + 1] if index + 1 < len(ordered) else None
            retired_at = successor.activates_at if successor and successor.activates_at <= now else None
            if retired_at is None or now < retired_at + self.overlap:
                kept.append(key)
        return kept

    def due(self, ring: KeyRing, now: float) -> bool:
        signing = self.signing(ring, now)
        if signing is None:
            return True
        pending = any(key.activates_at > now for key in ring.keys)
        return not pending and now >= signing.activates_at + self.rotation - self.publish_delay

    def rotated(self, ring: KeyRing, now: float, *, immediately: bool = False) -> KeyRing:
        """The ring with a new key: pre-published, or active at once (first key, forced rotation)."""
        immediately = immediately or self.signing(ring, now) is None
        new = generate_key(now, now if immediately else now + self.publish_delay)
        # A forced rotation supersedes a pending key, which never signed anything.
        kept = [key for key in self.published(ring, now) if not (immediately and key.activates_at > now)]
        return KeyRing(keys=[*kept, new])


def generate_key(created_at: float, activates_at: float) -> KeyRecord:
    key = RSAKey.generate_key(RSA_BITS, private=True)
    kid = key.thumbprint()  # RFC 7638: the kid is derived from the key, so it cannot collide
    return KeyRecord(kid=kid, private_jwk=key.as_dict(private=True), created_at=created_at, activates_at=activates_at)
