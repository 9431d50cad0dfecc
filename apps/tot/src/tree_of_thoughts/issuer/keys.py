"""Signing keys: the key ring, when to rotate, which keys the JWKS publishes, and the manager.

A new key is *published* (in the JWKS) ``publish_delay`` before it starts *signing*: by the time
the first token carries its kid, every replica has reloaded the ring and every verifier's cached
JWKS (max-age) already holds it. A key stops signing when its successor activates and stays
published for ``overlap`` after that, longer than any token it signed can live.

A forced rotation cannot wait a whole cache lifetime, so it publishes ``forced_delay`` ahead: every
replica's reload plus the interval at which verifiers refetch the JWKS on an unknown kid. A revoked
key is deleted from the ring outright (it never signs, publishes or verifies again).
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

RELOAD_SECONDS = 60.0  # default of KEY_RELOAD_SECONDS: how often every replica re-reads the ring
UNKNOWN_KID_RELOAD_SECONDS = 30.0  # at most this often, an unknown kid triggers an early reload
# Verifiers (platform_common.jwt.JwksCache) refetch the JWKS on an unknown kid at most this often.
VERIFIER_REFETCH_SECONDS = 30.0
# Slack for a slow store read and small clock differences between the writer and the replicas.
FORCED_MARGIN_SECONDS = 5.0
RSA_BITS = 2048

KEY_CREATED = Gauge(
    "mcp_jwt_key_created_timestamp",
    "Unix time at which the newest signing key (active or pre-published) was created.",
    multiprocess_mode="max",
)
KEY_STORE_LAST_SUCCESS = Gauge(
    "mcp_jwt_key_store_last_success_timestamp",
    "Unix time of this process's last successful read of the key store.",
    # The stalest live worker counts: one that cannot read the store stops issuing.
    multiprocess_mode="livemin",
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
    forced_delay: float = RELOAD_SECONDS + VERIFIER_REFETCH_SECONDS + FORCED_MARGIN_SECONDS

    @classmethod
    def from_settings(
        cls,
        *,
        rotation_hours: float,
        overlap_hours: float,
        token_hours: float,
        jwks_max_age: int,
        reload_seconds: float = RELOAD_SECONDS,
    ) -> KeyPolicy:
        """Refuse timings under which a valid token could outlive its key's presence in the JWKS."""
        policy = cls(
            rotation_hours * 3600,
            overlap_hours * 3600,
            jwks_max_age + reload_seconds,
            reload_seconds + VERIFIER_REFETCH_SECONDS + FORCED_MARGIN_SECONDS,
        )
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
                f"JWKS_CACHE_MAX_AGE + KEY_RELOAD_SECONDS = {policy.publish_delay:g} s, the time a new key "
                "is published before use"
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

    def rotated(self, ring: KeyRing, now: float, *, forced: bool = False) -> KeyRing:
        """The ring with a new key, published ``publish_delay`` (``forced_delay`` if forced) before it signs.

        The very first key signs at once: there is nothing to hand over from.
        """
        if self.signing(ring, now) is None:
            activates_at = now
        else:
            activates_at = now + (self.forced_delay if forced else self.publish_delay)
        # A forced rotation supersedes a pending key, which never signed anything.
        kept = [key for key in self.published(ring, now) if not (forced and key.activates_at > now)]
        return KeyRing(keys=[*kept, generate_key(now, activates_at)])

    def revoked(self, ring: KeyRing, kid: str, now: float) -> KeyRing:
        """The ring without ``kid``. If it was the signing key, a successor signs at once.

        The successor is the pending key when there is one (verifiers may already hold it), else a
        new key: the ring is never left without a signing key, and never signs with a revoked one.
        """
        if all(key.kid != kid for key in ring.keys):
            raise KeyError(kid)
        signing = self.signing(ring, now)
        kept = [key for key in self.published(ring, now) if key.kid != kid]
        if signing is None or signing.kid != kid:
            return KeyRing(keys=kept)
        pending = [key for key in kept if key.activates_at > now]
        if pending:
            successor = min(pending, key=lambda key: key.activates_at)
            kept = [key for key in kept if key.activates_at <= now or key.kid != successor.kid]
            return KeyRing(keys=[*kept, msgspec.structs.replace(successor, activates_at=now)])
        return KeyRing(keys=[*kept, generate_key(now, now)])


def generate_key(created_at: float, activates_at: float) -> KeyRecord:
    key = RSAKey.generate_key(RSA_BITS, private=True)
    kid = key.thumbprint()  # RFC 7638: the kid is derived from the key, so it cannot collide
    return KeyRecord(kid=kid, private_jwk=key.as_dict(private=True), created_at=created_at, activates_at=activates_at)
