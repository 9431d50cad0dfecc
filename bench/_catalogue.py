"""Shared bench helpers: a throwaway embedded PostgreSQL and a migrated, prepared Registry on it."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg

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
