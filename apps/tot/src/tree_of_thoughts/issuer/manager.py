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
    RELOAD_SECONDS,
    UNKNOWN_KID_RELOAD_SECONDS,
    KeyPolicy,
    KeyRecord,
    KeyRing,
)
from tree_of_thoughts.issuer.stores import KeyStore

logger = logging.getLogger(__name__)


class KeyManager:
    """One per process. ``refresh`` (at start-up and every minute) reloads and rotates when due.

    Reads are served from memory; the store is touched only by ``refresh``, ``rotate`` and, at
    most every 30 s, by a verification that meets a kid we do not know yet.
    """

    def __init__(self, store: KeyStore, policy: KeyPolicy, clock: Callable[[], float] = time.time) -> None:
        self.store, self.policy, self._clock = store, policy, clock
        self._ring = KeyRing()
        self._private: dict[str, RSAKey] = {}
        self._last_reload = float("-inf")

    def refresh(self) -> None:
        """Reload; if rotation is due, write a rotated ring (losing a race just means reloading)."""
        stored = self.store.load()
        now = self._clock()
        if self.policy.due(stored.ring, now):
            if self.store.save(self.policy.rotated(stored.ring, now), stored.version):
                logger.info("rotated the signing key")
            else:
                logger.info("another process rotated the signing key first; reloading")
            stored = self.store.load()
        self._use(stored.ring)

    def rotate(self) -> KeyRecord:
        """Force a rotation now (``tot keys rotate``); the old key stays published for the overlap."""
        while True:
            stored = self.store.load()
            ring = self.policy.rotated(stored.ring, self._clock(), immediately=True)
            if self.store.save(ring, stored.version):
                self._use(ring)
                return ring.keys[-1]

    def published_keys(self) -> list[KeyRecord]:
        return self.policy.published(self._ring, self._clock())

    def signing_key(self) -> tuple[str, RSAKey]:
        record = self.policy.signing(self._ring, self._clock())
        if record is None:
            raise RuntimeError("no signing key loaded (the key manager was not refreshed)")
        return record.kid, self._private_key(record)

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
            await asyncio.to_thread(self.reload)
            key = self._published_key(kid)
        return key

    def reload(self) -> None:
        self._use(self.store.load().ring)

    @contextlib.asynccontextmanager
    async def running(self, interval: float = RELOAD_SECONDS) -> AsyncIterator[None]:
        """Load (and rotate if due) before serving, then refresh in the background every ``interval``."""
        await asyncio.to_thread(self.refresh)
        task = asyncio.create_task(self._loop(interval))
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
