"""The key manager: the ring in memory, kept in step with the store, rotated when due."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from joserfc.jwk import RSAKey

from tree_of_thoughts.issuer.keys import (
    KEY_CREATED,
    KEY_STORE_LAST_SUCCESS,
    RELOAD_SECONDS,
    UNKNOWN_KID_RELOAD_SECONDS,
    KeyPolicy,
    KeyRecord,
    KeyRing,
)
from tree_of_thoughts.issuer.stores import KeyStore, StoredRing

logger = logging.getLogger(__name__)

DEFAULT_MAX_STALENESS_SECONDS = 3 * RELOAD_SECONDS


class KeyStoreStale(RuntimeError):
    """The key store has not been read for longer than the staleness bound: this process must not sign."""


class KeyManager:
    """One per process. ``refresh`` (at start-up and every ``reload_seconds``) reloads and rotates when due.

    Reads are served from memory; the store is touched only by ``refresh``, ``rotate``, ``revoke``
    and, at most every 30 s, by a verification that meets a kid we do not know yet. A process that
    has not read the store for ``max_staleness`` might still sign with a revoked or superseded key,
    so it stops signing (``signing_key`` raises ``KeyStoreStale``) until a read succeeds.
    """

    def __init__(
        self,
        store: KeyStore,
        policy: KeyPolicy,
        clock: Callable[[], float] = time.time,
        *,
        reload_seconds: float = RELOAD_SECONDS,
        max_staleness: float = DEFAULT_MAX_STALENESS_SECONDS,
    ) -> None:
        self.store, self.policy, self._clock = store, policy, clock
        self.reload_seconds, self.max_staleness = reload_seconds, max_staleness
        self._ring = KeyRing()
        self._private: dict[str, RSAKey] = {}
        self._last_reload = float("-inf")
        self._last_success = float("-inf")

    def refresh(self) -> None:
        """Reload; if rotation is due, write a rotated ring (losing a race just means reloading)."""
        stored = self._load()
        now = self._clock()
        if self.policy.due(stored.ring, now):
            if self.store.save(self.policy.rotated(stored.ring, now), stored.version):
                logger.info("rotated the signing key")
            else:
                logger.info("another process rotated the signing key first; reloading")
            stored = self._load()
        self._use(stored.ring)

    def rotate(self) -> KeyRecord:
        """Force a rotation (``tot keys rotate``): the new key is published now and signs after
        ``forced_delay``, when every replica and verifier can know it; the old key stays for the overlap."""
        while True:
            stored = self._load()
            ring = self.policy.rotated(stored.ring, self._clock(), forced=True)
            if self.store.save(ring, stored.version):
                self._use(ring)
                return ring.keys[-1]

    def revoke(self, kid: str) -> KeyRecord:
        """Delete ``kid`` from the ring (``tot keys revoke``); returns the key that signs afterwards.

        Raises ``KeyError`` for a kid the ring does not hold.
        """
        while True:
            stored = self._load()
            ring = self.policy.revoked(stored.ring, kid, self._clock())
            if self.store.save(ring, stored.version):
                self._use(ring)
                return self._signing_record()

    def published_keys(self) -> list[KeyRecord]:
        return self.policy.published(self._ring, self._clock())

    def signing_key(self) -> tuple[str, RSAKey]:
        """The kid and key to sign with; refuses when the store has been unreadable for too long."""
        stale = self.stale_reason()
        if stale is not None:
            raise KeyStoreStale(stale)
        record = self._signing_record()
        return record.kid, self._private_key(record)

    def stale_reason(self) -> str | None:
        """Why this process must not issue (the store unread past ``max_staleness``), else ``None``."""
        age = self._clock() - self._last_success
        if age <= self.max_staleness:
            return None
        if self._last_success == float("-inf"):
            return "key store never read"
        return f"key store unreadable for {age:.0f} s (limit {self.max_staleness:g} s)"

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: only n/e/kty plus kid/alg/use; private members never leave."""
        return {
            "keys": [
                {**self._private_key(record).as_dict(private=False), "kid": record.kid, "alg": "RS256", "use": "sig"}
                for record in self.published_keys()
            ]
        }

    async def key_for(self, kid: str) -> RSAKey | None:
        """Verification key for ``kid`` (the ``KeySource`` protocol): in-process, no HTTP self-call."""
        key = self._published_key(kid)
        if key is None and self._clock() - self._last_reload >= UNKNOWN_KID_RELOAD_SECONDS:
            self._last_reload = self._clock()  # a failing store is retried no more often than a working one
            try:
                await asyncio.to_thread(self.reload)
            except Exception as exc:  # the token is simply unknown; the refresh loop reports the store
                logger.warning("reloading the signing keys for an unknown kid failed (%s)", type(exc).__name__)
            key = self._published_key(kid)
        return key

    def reload(self) -> None:
        self._use(self._load().ring)

    async def readiness(self) -> str | None:
        """For ``/ready``: a replica that may not issue takes itself out of the Service."""
        return self.stale_reason()

    @contextlib.asynccontextmanager
    async def running(self, interval: float | None = None) -> AsyncIterator[None]:
        """Load (and rotate if due) before serving, then refresh in the background every ``interval``."""
        await asyncio.to_thread(self.refresh)
        task = asyncio.create_task(self._loop(self.reload_seconds if interval is None else interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                # Keep serving with the keys we have; the next round retries.
                logger.exception("refreshing the signing keys failed")

    def _load(self) -> StoredRing:
        stored = self.store.load()
        self._last_success = self._clock()
        KEY_STORE_LAST_SUCCESS.set(self._last_success)
        return stored

    def _signing_record(self) -> KeyRecord:
        record = self.policy.signing(self._ring, self._clock())
        if record is None:
            raise RuntimeError("no signing key loaded (the key manager was not refreshed)")
        return record

    def _published_key(self, kid: str) -> RSAKey | None:
        record = next((record for record in self.published_keys() if record.kid == kid), None)
        return None if record is None else self._private_key(record)

    def _private_key(self, record: KeyRecord) -> RSAKey:
        key = self._private.get(record.kid)
        if key is None:
            key = self._private[record.kid] = RSAKey.import_key(record.private_jwk)
        return key

    def _use(self, ring: KeyRing) -> None:
        self._ring = ring
        self._last_reload = self._clock()
        kids = {key.kid for key in ring.keys}
        self._private = {kid: key for kid, key in self._private.items() if kid in kids}
        # The newest key, pre-published ones included: rotation is the creation of a key, so this age
        # exceeds KEY_ROTATION_HOURS only when rotation is overdue (the alert MCPJWTKeyRotationDue).
        newest = max((key.created_at for key in ring.keys), default=None)
        if newest is not None:
            KEY_CREATED.set(newest)
