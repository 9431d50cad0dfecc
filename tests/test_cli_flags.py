"""Every command honours its flags over the environment, and secrets given as flags never become variables.

Real processes: ``tool-registry`` and ``tot`` as installed, the session PostgreSQL or an embedded one.
Each test sets a variable and the flag for the same setting to different values; the flag must win,
also inside uvicorn worker processes (which get the settings through a private file, not the environment).
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
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.registry.conftest import tool
from tests.reliability.harness import BIN, descendants
from tests.servers import free_port

BOGUS_DATABASE = "postgresql://nobody:nothing@127.0.0.1:9/none"  # the discard port: nothing answers
FLAG_SECRET = "flag-only-secret-7f3a"


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTH_", "DATABASE_", "PROMETHEUS_", "API_KEYS", "PORT", "DATA_DIR"))
    }
    env.update(LOG_LEVEL="WARNING", LOG_FORMAT="json", RATE_LIMIT_PER_MINUTE="0", METRICS_PORT="0")
    env.update(extra)
    return env


def run(command: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@contextmanager
def serving(command: str, *args: str, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``<command> serve <args>`` until /ready answers 200 on ``port``; stopped with SIGTERM afterwards."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below, after the process)
    process = subprocess.Popen(
        [str(BIN / command), "serve", *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"{command} exited: {log.read().decode(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{command} not ready on the flag's port {port}"
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)
        log.close()


def environ_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_registry_serve_with_the_embedded_database_honours_its_flags() -> None:
    # Before: without DATABASE_URL the settings were rebuilt from the environment, dropping every flag.
    tmp_path = Path(tempfile.mkdtemp(prefix="mcp-flags-"))
    tmp_path.chmod(0o755)  # the embedded PostgreSQL runs as nobody, who must traverse it
    env_port, flag_port = free_port(), free_port()
    env = base_env(PORT=str(env_port), API_KEYS=digest("env-key"), DATA_DIR=str(tmp_path / "env"))
    args = ["--port", str(flag_port), "--api-keys", digest("flag-key"), "--data-dir", str(tmp_path / "flag")]
    with serving("tool-registry", *args, env=env, port=flag_port):
        url = f"http://127.0.0.1:{flag_port}/api/v1/categories"
        assert httpx.get(url, headers={"X-API-Key": "flag-key"}).status_code == 200
        assert httpx.get(url, headers={"X-API-Key": "env-key"}).status_code == 401
        assert (tmp_path / "flag").is_dir() and not (tmp_path / "env").exists()


def test_registry_workers_get_the_flags_and_no_secret_reaches_their_environment(database_url: str) -> None:
    # Before: the runner exported every setting, secrets included, as variables of the worker processes.
    port = free_port()
    env = base_env(DATABASE_URL=BOGUS_DATABASE, API_KEYS=digest("env-key"))
    args = ["--port", str(port), "--workers", "2", "--database-url", database_url, "--api-keys", digest("flag-key")]
    with serving("tool-registry", *args, "--embedding-api-key", FLAG_SECRET, env=env, port=port) as server:
        url = f"http://127.0.0.1:{port}/api/v1/categories"
        statuses = {httpx.get(url, headers={"X-API-Key": "flag-key"}).status_code for _ in range(20)}
        assert statuses == {200}  # every worker took the flag's key (and the flag's database)
        workers = descendants(server.pid)
        assert len(workers) >= 2
        for pid in [server.pid, *workers]:
            environ = environ_of(pid)
            assert FLAG_SECRET not in environ and database_url not in environ and digest("flag-key") not in environ
            assert "MCP_SETTINGS_FILE=" in environ or pid == server.pid
        handoff = next(
            line.split("=", 1)[1]
            for line in environ_of(workers[-1]).split("\0")
            if line.startswith("MCP_SETTINGS_FILE=")
        )
        assert oct(Path(handoff).stat().st_mode & 0o777) == "0o600"
    assert not Path(handoff).exists()  # removed when the server stops


def test_registry_migrate_import_search_and_reindex_take_the_database_flag(database_url: str, tmp_path: Path) -> None:
    env = base_env(DATABASE_URL=BOGUS_DATABASE)
    migrated = run("tool-registry", "migrate", "--database-url", database_url, env=env)
    assert migrated.returncode == 0, migrated.stderr
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([tool("weather.now", "Current weather for a city.")]))
    imported = run("tool-registry", "import", str(path), "--database-url", database_url, env=env)
    assert imported.returncode == 0, imported.stderr
    found = run("tool-registry", "search", "weather in Oslo", "--database-url", database_url, env=env)
    assert [r["name"] for r in json.loads(found.stdout)["results"]] == ["weather.now"], found.stderr
    reindexed = run("tool-registry", "reindex", "--database-url", database_url, env=env)
    assert json.loads(reindexed.stdout)["embedded"] == 1, reindexed.stderr


def test_tot_serve_workers_take_the_flags_and_no_secret_reaches_their_environment(
    database_url: str, tmp_path: Path
) -> None:
    env_port, flag_port = free_port(), free_port()
    env = base_env(
        PORT=str(env_port), DATABASE_URL=BOGUS_DATABASE, ISSUER_URL="http://env.example", DATA_DIR=str(tmp_path)
    )
    args = ["--port", str(flag_port), "--workers", "2", "--database-url", database_url]
    args += ["--issuer-url", "http://flag.example", "--llm-api-key", FLAG_SECRET]
    with serving("tot", *args, env=env, port=flag_port) as server:
        issuers = {
            httpx.get(f"http://127.0.0.1:{flag_port}/.well-known/oauth-authorization-server").json()["issuer"]
            for _ in range(10)
        }
        assert issuers == {"http://flag.example"}
        for pid in [server.pid, *descendants(server.pid)]:
            assert FLAG_SECRET not in environ_of(pid) and database_url not in environ_of(pid)


def test_tot_keys_and_token_take_their_flags(tmp_path: Path) -> None:
    env = base_env(DATA_DIR=str(tmp_path / "env"), JWT_EXPIRATION_HOURS="1")
    listed = run("tot", "keys", "list", "--data-dir", str(tmp_path / "flag"), env=env)
    assert listed.returncode == 0, listed.stderr
    assert (tmp_path / "flag" / "keys" / "keyring.json").exists() and not (tmp_path / "env").exists()
    issued = run(
        "tot", "token", "issue", "--sub", "ops", "--scope", "tot:read",
        "--data-dir", str(tmp_path / "flag"), "--jwt-expiration-hours", "2", env=env,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    payload = issued.stdout.strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] - claims["iat"] == 2 * 3600 and claims["aud"] == "tree-of-thoughts"
    assert listed.stdout.split()[0] in Path(tmp_path / "flag" / "keys" / "keyring.json").read_text()
