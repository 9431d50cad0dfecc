"""Signing keys across real processes: two ToT replicas sharing one key store, the registry verifying.

- ``tot keys revoke`` takes a key out of every replica and out of the registry within the documented
  bound (KEY_RELOAD_SECONDS + AUTH_JWKS_MAX_AGE_SECONDS), even when it was the signing key.
- ``tot keys rotate`` (forced) never makes a fresh token fail: tokens minted continuously across it
  from both replicas all verify at the registry and at the other replica.
- A replica that cannot read the key store past KEY_STORE_MAX_STALENESS_SECONDS stops issuing.

Printed numbers (propagation times, counts) are those docs/security.md quotes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.reliability.harness import BIN, AppProcess, registry_process, tot_process

SECRET = "signing-keys-test-secret"
ISSUER = "http://tot.test"
CLIENTS = json.dumps(
    [
        {
            "client_id": "agent",
            "secret_sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
            "scopes": ["registry:read", "tot:read"],
            "audiences": ["tool-registry", "tree-of-thoughts"],
        }
    ]
)
REGISTRY_READ = "/api/v1/categories"
TOT_READ = "/api/v1/runs"


@contextmanager
def platform(
    database_url: str, data_dir: str, *, reload_seconds: int, jwks_max_age: int | None = None, **tot_extra: str
) -> Iterator[tuple[list[AppProcess], AppProcess]]:
    """Two ToT replicas on one key store (``data_dir``) and a registry verifying against replica A's JWKS."""
    tot_env = {
        "AUTH_MODE": "jwt",
        "OAUTH_CLIENTS": CLIENTS,
        "ISSUER_URL": ISSUER,
        "DATA_DIR": data_dir,
        "KEY_RELOAD_SECONDS": str(reload_seconds),
        **tot_extra,
    }
    with ExitStack() as stack:
        replicas = [tot_process("", **tot_env), tot_process("", **tot_env)]
        for replica in replicas:
            replica.launch()
            stack.callback(replica.stop)
        registry_env = {
            "AUTH_MODE": "jwt",
            "AUTH_JWKS_URL": f"{replicas[0].url}/.well-known/jwks.json",
            "AUTH_ISSUER": ISSUER,
        }
        if jwks_max_age is not None:
            registry_env["AUTH_JWKS_MAX_AGE_SECONDS"] = str(jwks_max_age)
        registry = registry_process(database_url, **registry_env).launch()
        stack.callback(registry.stop)
        for app in (*replicas, registry):
            app.wait_ready(120)
        yield replicas, registry


def mint(http: httpx.Client, replica: AppProcess, audience: str = "tool-registry") -> str:
    response = http.post(
        f"{replica.url}/oauth/token",
        data={"grant_type": "client_credentials", "audience": audience},
        auth=("agent", SECRET),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def status(http: httpx.Client, url: str, token: str) -> int:
    return http.get(url, headers={"Authorization": f"Bearer {token}"}).status_code


def tot_cli(data_dir: str, *args: str, reload_seconds: int) -> str:
    """``tot <args>`` on the replicas' key store with their KEY_RELOAD_SECONDS (as `kubectl exec` would)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "KEY_", "DATABASE_"))}
    env.update(DATA_DIR=data_dir, LOG_FORMAT="text", KEY_RELOAD_SECONDS=str(reload_seconds))
    done = subprocess.run([str(BIN / "tot"), *args], env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def seconds_until(predicate: object, timeout: float) -> float:
    """Seconds until ``predicate()`` holds (polled every 50 ms); fails the test past ``timeout``."""
    assert callable(predicate)
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.slow
def test_a_revoked_key_is_refused_everywhere_within_the_bound(database_url: str) -> None:
    reload_seconds, jwks_max_age = 1, 2
    bound = reload_seconds + jwks_max_age + 1  # + 1 s: the store read, the JWKS fetch, polling
    data_dir = tempfile.mkdtemp(prefix="mcp-keys-")
    with (
        platform(database_url, data_dir, reload_seconds=reload_seconds, jwks_max_age=jwks_max_age) as (
            replicas,
            registry,
        ),
        httpx.Client(timeout=10) as http,
    ):
        leaked = mint(http, replicas[1])
        leaked_for_tot = mint(http, replicas[1], "tree-of-thoughts")
        leaked_kid = kid_of(leaked)
        assert status(http, registry.url + REGISTRY_READ, leaked) == 200
        assert [status(http, r.url + TOT_READ, leaked_for_tot) for r in replicas] == [200, 200]

        revoked_at = time.monotonic()
        output = tot_cli(data_dir, "keys", "revoke", leaked_kid, reload_seconds=reload_seconds)  # it is the signing key
        assert f"revoked {leaked_kid}" in output
        registry_refuses = seconds_until(lambda: status(http, registry.url + REGISTRY_READ, leaked) == 401, 30)
        tot_refuses = max(
            seconds_until(lambda r=r: status(http, r.url + TOT_READ, leaked_for_tot) == 401, 30)  # type: ignore[misc]
            for r in replicas
        )
        since_revoke = time.monotonic() - revoked_at
        # Both replicas sign with the successor, and its tokens verify at the registry.
        fresh = [mint(http, r) for r in replicas]
        assert all(kid_of(token) != leaked_kid for token in fresh)
        new_key_verifies = seconds_until(
            lambda: all(status(http, registry.url + REGISTRY_READ, t) == 200 for t in fresh), bound
        )
        jwks = http.get(f"{replicas[1].url}/.well-known/jwks.json").json()
        assert leaked_kid not in {key["kid"] for key in jwks["keys"]}
    print(
        f"\nrevocation: registry refuses after {registry_refuses:.2f} s, both ToT replicas after "
        f"{tot_refuses:.2f} s (all within {since_revoke:.2f} s; bound {bound} s); the successor verifies "
        f"{new_key_verifies:.2f} s later"
    )
    assert registry_refuses <= bound and since_revoke <= bound + reload_seconds


@pytest.mark.slow
def test_a_forced_rotation_makes_no_fresh_token_fail(database_url: str) -> None:
    # The registry keeps its JWKS for the default 300 s: only the refetch on an unknown kid saves it.
    reload_seconds = 2
    data_dir = tempfile.mkdtemp(prefix="mcp-keys-")
    with (
        platform(database_url, data_dir, reload_seconds=reload_seconds) as (replicas, registry),
        httpx.Client(timeout=10) as http,
    ):
        old_kid = kid_of(mint(http, replicas[0]))
        results: list[tuple[float, str, int, int]] = []  # (time, kid, registry status, other ToT status)
        rotated_at: float | None = None
        new_kid = ""
        started = time.monotonic()
        while time.monotonic() - started < 90:
            for index, replica in enumerate(replicas):
                token = mint(http, replica)
                for_tot = mint(http, replica, "tree-of-thoughts")
                other = replicas[1 - index]
                results.append(
                    (
                        time.monotonic(),
                        kid_of(token),
                        status(http, registry.url + REGISTRY_READ, token),
                        status(http, other.url + TOT_READ, for_tot),
                    )
                )
            if rotated_at is None and time.monotonic() - started > 3:
                rotated_at = time.monotonic()
                new_kid = (
                    tot_cli(data_dir, "keys", "rotate", reload_seconds=reload_seconds)
                    .split("new signing key ")[1]
                    .split()[0]
                )
            signed_by_new = [t for t, kid, _, _ in results if kid == new_kid]
            if signed_by_new and time.monotonic() - signed_by_new[0] > 5:
                break  # both replicas have been signing with the new key for a while
            time.sleep(0.05)
    assert rotated_at is not None and new_kid and new_kid != old_kid
    failures = [(t - rotated_at, kid, reg, tot) for t, kid, reg, tot in results if reg != 200 or tot != 200]
    first_new = min(t for t, kid, _, _ in results if kid == new_kid) - rotated_at
    print(
        f"\nforced rotation: {len(results)} tokens x 2 verifications, {len(failures)} failures; the new key "
        f"signed first {first_new:.1f} s after `tot keys rotate`"
    )
    assert failures == []
    assert {kid for _, kid, _, _ in results} == {old_kid, new_kid}


@pytest.mark.slow
def test_a_replica_that_cannot_read_the_key_store_stops_issuing(database_url: str) -> None:
    data_dir = tempfile.mkdtemp(prefix="mcp-keys-")
    ring = Path(data_dir) / "keys" / "keyring.json"
    replica = tot_process(
        "",
        AUTH_MODE="jwt",
        OAUTH_CLIENTS=CLIENTS,
        ISSUER_URL=ISSUER,
        DATA_DIR=data_dir,
        KEY_RELOAD_SECONDS="1",
        KEY_STORE_MAX_STALENESS_SECONDS="3",
    )
    with replica, httpx.Client(timeout=10) as http:
        mint(http, replica)
        saved = ring.read_bytes()
        ring.unlink()
        ring.mkdir()  # reading the store now fails (root ignores file modes, so not chmod)
        unready = seconds_until(lambda: http.get(f"{replica.url}/ready").status_code == 503, 15)
        ready = http.get(f"{replica.url}/ready").json()
        assert "key store unreadable" in ready["checks"]["signing_keys"]
        refused = http.post(
            f"{replica.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("agent", SECRET)
        )
        assert refused.status_code == 503 and refused.json()["error"] == "temporarily_unavailable"
        assert SECRET not in refused.text and str(ring) not in refused.text
        metrics = http.get(f"http://127.0.0.1:{replica.metrics_port}/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith("mcp_jwt_key_store_last_success_timestamp"))
        assert time.time() - float(line.split()[-1]) > 3
        ring.rmdir()
        ring.write_bytes(saved)
        recovered = seconds_until(lambda: http.get(f"{replica.url}/ready").status_code == 200, 15)
        mint(http, replica)
    print(
        f"\nstale key store: not ready {unready:.1f} s after the store broke (bound 3 s + one reload); "
        f"ready again {recovered:.1f} s after it healed"
    )
    assert unready <= 3 + 1 + 1
