"""Key rotation: timing policy, overlap on every replica, and both key stores' compare-and-swap."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from platform_common.jwt import InvalidToken, JwksCache, JwtVerifier
from platform_common.settings import SettingsError
from tests.tot.k8s_double import api_client, secrets_api
from tree_of_thoughts.config import TotSettings
from tree_of_thoughts.issuer import key_manager
from tree_of_thoughts.issuer.keys import VERIFIER_REFETCH_SECONDS, KeyPolicy, KeyRing
from tree_of_thoughts.issuer.manager import KeyManager, KeyStoreStale
from tree_of_thoughts.issuer.stores import FileKeyStore, KubernetesKeyStore, StoredRing, build_store
from tree_of_thoughts.issuer.tokens import TokenIssuer

HOUR = 3600.0
POLICY = KeyPolicy.from_settings(rotation_hours=10, overlap_hours=3, token_hours=2, jwks_max_age=3600)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_policy_refuses_an_overlap_shorter_than_token_life_plus_cache_age() -> None:
    with pytest.raises(SettingsError, match="KEY_OVERLAP_HOURS"):
        KeyPolicy.from_settings(rotation_hours=168, overlap_hours=24, token_hours=24, jwks_max_age=3600)
    with pytest.raises(SettingsError, match="KEY_ROTATION_HOURS"):
        KeyPolicy.from_settings(rotation_hours=1, overlap_hours=48, token_hours=24, jwks_max_age=3600)
    with pytest.raises(SettingsError, match="KEY_OVERLAP_HOURS"):
        key_manager(TotSettings.from_env({}, key_overlap_hours=1))


async def test_a_token_verifies_on_every_replica_through_the_overlap_and_not_after(tmp_path: Path) -> None:
    clock = Clock()
    store = FileKeyStore(tmp_path / "keys")
    replica_a, replica_b = KeyManager(store, POLICY, clock), KeyManager(store, POLICY, clock)
    replica_a.refresh()
    replica_b.refresh()
    issuer = TokenIssuer(replica_a, issuer="https://tot", audience="mcp", ttl_seconds=2 * HOUR, clock=clock)
    verifiers = [JwtVerifier(r, issuer="https://tot", audience="mcp", clock=clock) for r in (replica_a, replica_b)]
    first_kid = replica_a.signing_key()[0]
    assert replica_b.signing_key()[0] == first_kid

    # Rotation is due publish_delay before the rotation period ends: the next key is published first.
    clock.now += 10 * HOUR - POLICY.publish_delay
    replica_a.refresh()
    replica_b.refresh()
    assert len(replica_b.jwks()["keys"]) == 2 and replica_b.signing_key()[0] == first_kid
    old_token, _ = issuer.issue("agent", ["tot:run"], ttl_seconds=5 * HOUR)  # longer than overlap, on purpose

    clock.now += POLICY.publish_delay + 1  # the new key signs now; the old one is retired
    replica_a.refresh()  # replicas keep reloading (one that stops reading the store stops signing)
    assert issuer.keys.signing_key()[0] != first_kid
    clock.now += 2.9 * HOUR  # still within the 3 h overlap
    replica_a.refresh()
    new_token, _ = issuer.issue("agent", ["tot:run"])
    for verifier in verifiers:
        assert (await verifier.verify(old_token))["sub"] == "agent"
        assert (await verifier.verify(new_token))["sub"] == "agent"

    clock.now += 0.2 * HOUR  # overlap over: the retired key leaves the JWKS everywhere
    replica_a.refresh()
    replica_b.refresh()
    assert [key["kid"] for key in replica_b.jwks()["keys"]] == [replica_b.signing_key()[0]]
    for verifier in verifiers:
        with pytest.raises(InvalidToken, match="unknown kid"):
            await verifier.verify(old_token)


def test_the_file_store_keeps_private_keys_private_and_detects_stale_writes(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "keys")
    manager = KeyManager(store, POLICY)
    manager.refresh()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    stale = store.load().version
    manager.rotate()
    assert store.save(KeyRing(), stale) is False  # someone else wrote since: refused
    assert "d" not in manager.jwks()["keys"][0]  # the JWKS never carries private members


def test_the_metric_reports_the_newest_keys_creation_time(tmp_path: Path) -> None:
    clock = Clock()
    manager = KeyManager(FileKeyStore(tmp_path / "keys"), POLICY, clock)
    manager.refresh()
    first = clock.now
    assert REGISTRY.get_sample_value("mcp_jwt_key_created_timestamp") == first
    # Rotation due: the successor is created (pre-published, not yet signing) and the age drops to 0,
    # so key age > KEY_ROTATION_HOURS means "rotation overdue", never "handover in progress".
    clock.now += POLICY.rotation
    manager.refresh()
    signing_kid, _ = manager.signing_key()
    assert signing_kid == manager.published_keys()[0].kid  # the first key still signs
    assert REGISTRY.get_sample_value("mcp_jwt_key_created_timestamp") == clock.now


class BarrierStore(KubernetesKeyStore):
    """Both replicas load the same version before either writes: a true race."""

    barrier = threading.Barrier(2)

    def save(self, ring: KeyRing, version: str) -> bool:
        self.barrier.wait(timeout=10)
        return super().save(ring, version)


def test_kubernetes_replicas_racing_to_rotate_agree_on_one_key() -> None:
    with secrets_api() as (api, url):
        api.create("mcp", "tot-signing-keys")
        managers = [KeyManager(BarrierStore(_core(url), "tot-signing-keys", "mcp"), POLICY) for _ in range(2)]
        threads = [threading.Thread(target=manager.refresh) for manager in managers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert api.writes == 1 and api.conflicts == 1  # exactly one replica won; the other reloaded
        assert managers[0].signing_key()[0] == managers[1].signing_key()[0]
        secret = api.secrets[("mcp", "tot-signing-keys")]
        assert secret["metadata"]["labels"] == {"app.kubernetes.io/name": "tree-of-thoughts"}  # patch, not replace


def test_kubernetes_replicas_pick_up_a_forced_rotation_on_reload() -> None:
    clock = Clock()
    with secrets_api() as (api, url):
        api.create("mcp", "keys")
        first = KeyManager(build_store("kubernetes", "", "keys", "mcp", api_client(url)), POLICY, clock)
        second = KeyManager(build_store("kubernetes", "", "keys", "mcp", api_client(url)), POLICY, clock)
        first.refresh()
        second.refresh()
        old_kid = first.signing_key()[0]
        rotated = first.rotate()
        # Published at once, signing only after the forced delay: nobody signs with a kid others lack.
        assert first.signing_key()[0] == old_kid and rotated.activates_at == clock.now + POLICY.forced_delay
        second.refresh()  # the periodic check
        assert {key["kid"] for key in second.jwks()["keys"]} == {old_kid, rotated.kid}
        clock.now += POLICY.forced_delay
        assert first.signing_key()[0] == second.signing_key()[0] == rotated.kid
        assert {key["kid"] for key in second.jwks()["keys"]} == {key["kid"] for key in first.jwks()["keys"]}


def test_the_forced_delay_covers_a_replica_reload_and_a_verifier_refetch() -> None:
    policy = KeyPolicy.from_settings(
        rotation_hours=168, overlap_hours=48, token_hours=24, jwks_max_age=3600, reload_seconds=60
    )
    assert policy.forced_delay >= 60 + VERIFIER_REFETCH_SECONDS
    assert policy.publish_delay == 3600 + 60
    assert JwksCache("http://issuer/jwks").refresh_interval <= VERIFIER_REFETCH_SECONDS


async def test_a_revoked_key_leaves_every_replica_on_reload(tmp_path: Path) -> None:
    clock = Clock()
    store = FileKeyStore(tmp_path / "keys")
    replica_a, replica_b = KeyManager(store, POLICY, clock), KeyManager(store, POLICY, clock)
    replica_a.refresh()
    replica_b.refresh()
    issuer = TokenIssuer(replica_b, issuer="https://tot", audience="mcp", ttl_seconds=HOUR, clock=clock)
    leaked_kid = replica_b.signing_key()[0]
    token, _ = issuer.issue("agent", ["tot:run"])
    verifier = JwtVerifier(replica_b, issuer="https://tot", audience="mcp", clock=clock)
    assert (await verifier.verify(token))["sub"] == "agent"

    successor = replica_a.revoke(leaked_kid)  # the signing key: a successor signs at once
    assert successor.kid != leaked_kid and replica_a.signing_key()[0] == successor.kid
    assert leaked_kid not in store.path.read_text()  # the private key is gone from the store
    replica_b.refresh()
    assert [key["kid"] for key in replica_b.jwks()["keys"]] == [successor.kid]
    assert replica_b.signing_key()[0] == successor.kid
    with pytest.raises(InvalidToken, match="unknown kid"):
        await verifier.verify(token)
    with pytest.raises(KeyError):
        replica_a.revoke(leaked_kid)


def test_revoking_the_signing_key_promotes_the_pre_published_one(tmp_path: Path) -> None:
    clock = Clock()
    manager = KeyManager(FileKeyStore(tmp_path / "keys"), POLICY, clock)
    manager.refresh()
    first = manager.signing_key()[0]
    clock.now += POLICY.rotation - POLICY.publish_delay
    manager.refresh()  # the successor is pre-published: verifiers may already hold it
    pending = next(key.kid for key in manager.published_keys() if key.kid != first)
    assert manager.revoke(first).kid == pending
    assert [key.kid for key in manager.published_keys()] == [pending]


class FailingStore(FileKeyStore):
    """The real file store, until ``broken`` is set: then every read fails like an unreachable API."""

    broken = False

    def load(self) -> StoredRing:
        if self.broken:
            raise OSError("key store unreachable")
        return super().load()


async def test_a_replica_that_cannot_read_the_store_stops_issuing_past_the_bound(tmp_path: Path) -> None:
    clock = Clock()
    store = FailingStore(tmp_path / "keys")
    manager = KeyManager(store, POLICY, clock, reload_seconds=60, max_staleness=180)
    manager.refresh()
    assert REGISTRY.get_sample_value("mcp_jwt_key_store_last_success_timestamp") == clock.now
    store.broken = True
    clock.now += 170
    with pytest.raises(OSError, match="unreachable"):
        manager.refresh()
    assert await manager.readiness() is None and manager.signing_key()  # within the bound: still issuing
    assert await manager.key_for("unknown-kid") is None  # an early reload that fails is no error
    clock.now += 11
    with pytest.raises(KeyStoreStale):
        manager.signing_key()
    assert "key store unreadable for 181 s" in (await manager.readiness() or "")
    store.broken = False
    manager.refresh()
    assert await manager.readiness() is None and manager.signing_key()


def test_a_missing_secret_is_a_clear_error() -> None:
    with secrets_api() as (_, url), pytest.raises(RuntimeError, match="the chart creates it"):
        KubernetesKeyStore(_core(url), "absent", "mcp").load()


def _core(url: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client(url))
