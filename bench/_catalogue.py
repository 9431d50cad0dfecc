"""Shared bench helpers: a throwaway embedded PostgreSQL and a migrated, prepared Registry on it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np

from platform_common.db import migrate
from platform_common.embedded_postgres import EmbeddedPostgres
from tool_registry.app import MIGRATIONS, MIGRATIONS_TABLE
from tool_registry.config import RegistrySettings
from tool_registry.registry import Registry

REPO_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def postgres() -> Iterator[EmbeddedPostgres]:
    """PostgreSQL 18 + pgvector in a temporary directory, removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="registry-bench-pg-"))
    data_dir.chmod(0o755)  # as root the server runs as nobody
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def fresh_database(server: EmbeddedPostgres) -> str:
    name = f"bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def settings(database_url: str, **overrides: Any) -> RegistrySettings:
    return RegistrySettings.from_env({}, database_url=database_url, auth_mode="none", metrics_port=0, **overrides)


@contextlib.asynccontextmanager
async def registry(database_url: str, **overrides: Any) -> AsyncIterator[Registry]:
    """A Registry on a migrated database with its model's index prepared (no background tasks)."""
    config = settings(database_url, **overrides)
    await migrate(database_url, MIGRATIONS, table=MIGRATIONS_TABLE)
    service = Registry.build(config)
    await service.indexer.prepare()
    try:
        yield service
    finally:
        await service.primary.close()


WORDS = [
    "weather",
    "forecast",
    "flight",
    "hotel",
    "booking",
    "stock",
    "price",
    "market",
    "news",
    "translate",
    "text",
    "image",
    "resize",
    "pdf",
    "extract",
    "calendar",
    "event",
    "email",
    "send",
    "search",
    "web",
    "database",
    "query",
    "github",
    "issue",
    "pull",
    "request",
    "music",
    "playlist",
    "video",
    "recipe",
    "cooking",
    "fitness",
    "workout",
    "map",
    "route",
    "traffic",
    "currency",
    "convert",
    "tax",
    "invoice",
    "payment",
    "crypto",
    "wallet",
    "shopping",
    "product",
    "review",
    "movie",
    "ticket",
    "game",
    "score",
    "sports",
    "team",
    "health",
    "doctor",
    "pharmacy",
    "legal",
    "contract",
    "school",
    "course",
    "quiz",
    "language",
    "grammar",
    "code",
    "review",
    "deploy",
    "server",
    "log",
    "metric",
    "alert",
    "chart",
    "report",
]


def synthetic_tools(count: int, dimension: int = 384, clusters: int = 64, seed: int = 0) -> list[dict[str, Any]]:
    """Tools with random-but-clustered unit vectors (as real catalogues cluster by topic) and
    descriptions drawn from their cluster's words, with precomputed embeddings for the import API."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dimension)).astype(np.float32)
    topics = [rng.choice(WORDS, size=6, replace=False) for _ in range(clusters)]
    assignment = rng.integers(0, clusters, size=count)
    vectors = centres[assignment] + rng.normal(scale=0.6, size=(count, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tools = []
    for i in range(count):
        words = " ".join(rng.choice(topics[assignment[i]], size=4))
        tools.append(
            {
                "name": f"synthetic.tool_{i:06d}",
                "description": f"Tool {i}: {words} {' '.join(rng.choice(WORDS, size=4))}.",
                "category": f"cat{assignment[i] % 16:02d}",
                "tags": [str(t) for t in rng.choice(WORDS, size=2, replace=False)],
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                "embedding": {"model": "all-MiniLM-L6-v2", "vector": [round(float(x), 6) for x in vectors[i]]},
            }
        )
    return tools


@contextlib.contextmanager
def registry_process(
    database_url: str, port: int, pids: list[int] | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``tool-registry serve`` as its own process (one worker unless ``env`` sets WORKERS), so the load
    generator does not share its interpreter; yields the base URL once /ready answers. ``pids``
    receives the process id (with one worker it serves in that process; with more it is their
    parent), for benches that read its CPU time or profile it. ``env`` adds or overrides variables."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AUTH_MODE": "none",
        "PORT": str(port),
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_MINUTE": "0",
        **(env or {}),
    }
    process = subprocess.Popen([sys.executable, "-c", "from tool_registry.cli import main; main()", "serve"], env=env)
    if pids is not None:
        pids.append(process.pid)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the registry did not become ready")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def import_chunks(http: httpx.AsyncClient, tools: list[dict[str, Any]], chunk: int = 1000) -> float:
    """Import ``tools`` through the REST API, ``chunk`` per request; returns tools per second."""
    started = time.perf_counter()
    for start in range(0, len(tools), chunk):
        response = await http.post(
            "/api/v1/tools/import",
            content=json.dumps(tools[start : start + chunk]),
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()
    return len(tools) / (time.perf_counter() - started)
