"""Fixtures shared by every test: one embedded PostgreSQL + pgvector for the whole session."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from platform_common.embedded_postgres import EmbeddedPostgres

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    """A real PostgreSQL 18 with pgvector, started once per test session."""
    # As root the server runs as nobody, who must reach the data dir (pytest's tmp dirs are private).
    data_dir = Path(tempfile.mkdtemp(prefix="mcp-test-pg-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def database_url(postgres: EmbeddedPostgres) -> str:
    """A fresh, empty database on the session server, so tests never see each other's rows."""
    name = f"test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"
