"""Real processes for reliability tests: a restartable PostgreSQL, the two apps as subprocesses, load.

Everything listens on 127.0.0.1 only. Each app is started exactly as in production
(``tool-registry serve`` / ``tot serve``) with its settings in the environment, so signals,
uvicorn's shutdown, worker processes and the connection pool behave as they do in a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from platform_common.embedded_postgres import EmbeddedPostgres
from tests.servers import free_port

BIN = Path(sys.executable).parent
LOG_DIR = Path(tempfile.gettempdir()) / "mcp-reliability-logs"


@contextlib.contextmanager
def dedicated_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of its own on a fixed port, so a test can stop it and start it again on that port."""
    data_dir = Path(tempfile.mkdtemp(prefix="mcp-rel-pg-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir, port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of an app process: auth off, no rate limit, JSON logs, loopback only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "AUTH_", "DATABASE_"))}
    env.update(
        HOST="127.0.0.1",
        DATABASE_URL=database_url,
        AUTH_MODE="none",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        RATE_LIMIT_PER_MINUTE="0",
        DATA_DIR=tempfile.mkdtemp(prefix="mcp-rel-data-"),
        # The apps listen on 127.0.0.1 at ephemeral ports: both allowed explicitly for upstreams.
        UPSTREAM_ALLOWED_HOSTS="127.0.0.1",
        UPSTREAM_ALLOWED_PORTS="1024-65535",
    )
    env.update(extra)
    return env


@dataclass
class AppProcess:
    """One app started as ``<command> serve``; ``url`` is its API, ``metrics_url`` its metrics port."""

    name: str
    command: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, ready_timeout: float = 60.0) -> AppProcess:
        self.launch()
        self.wait_ready(ready_timeout)
        return self

    def launch(self) -> AppProcess:
        """Start the process without waiting for it: several apps then boot side by side."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}-{self.port}.log"
        env = {**self.env, "PORT": str(self.port), "METRICS_PORT": str(self.metrics_port)}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / self.command), "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def error_lines(self, limit: int = 5) -> list[str]:
        """The last ``limit`` ERROR records of the app's log, for assertion messages: a 500 seen once in CI
        is only diagnosable from the traceback the app logged."""
        return [line for line in self.log_text().splitlines() if '"level":"ERROR"' in line][-limit:]

    def pids(self) -> list[int]:
        """The server process and every descendant (uvicorn workers)."""
        assert self.process is not None
        return [self.pid, *descendants(self.pid)]

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait; SIGKILL the process group if it does not exit in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    def __enter__(self) -> AppProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def registry_process(database_url: str, **extra: str) -> AppProcess:
    return AppProcess("registry", "tool-registry", app_env(database_url, **extra))


def tot_process(database_url: str, **extra: str) -> AppProcess:
    return AppProcess("tot", "tot", app_env(database_url, **extra))


# --- /proc readings ----------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


async def pg_connections(admin_url: str) -> int:
    """Client connections to the server other than this one (pg_stat_activity, backend_type client)."""
    conn = await asyncpg.connect(admin_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One request the load client made."""

    name: str
    sent: float
    done: float
    status: int | None  # None: no HTTP answer (see ``error``)
    content_type: str = ""
    error: str = ""
    body: Any = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def timed(client: httpx.AsyncClient, name: str, method: str, url: str, **kwargs: Any) -> Sample:
    sent = time.monotonic()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        return Sample(name, sent, time.monotonic(), None, error=f"{type(exc).__name__}: {exc}")
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    content_type = response.headers.get("content-type", "")
    return Sample(name, sent, time.monotonic(), response.status_code, content_type, "", body)


async def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False


MCP_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2025-06-18",
}


def mcp_request(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


async def mcp_tool_call(client: httpx.AsyncClient, base_url: str, name: str, arguments: dict[str, Any]) -> Sample:
    """One stateless ``tools/call`` (JSON response); ``body`` is the JSON-RPC answer."""
    body = mcp_request("tools/call", {"name": name, "arguments": arguments})
    return await timed(client, f"mcp {name}", "POST", f"{base_url}/mcp", json=body, headers=MCP_HEADERS)
