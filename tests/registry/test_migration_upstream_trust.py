"""Migration 0003 on a database that already has upstream servers with auth_env values."""

from __future__ import annotations

from importlib import resources

import asyncpg

MIGRATIONS = resources.files("tool_registry.migrations")


async def test_auth_env_becomes_a_credential_reference(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for name in ("0001_catalogue.sql", "0002_rate_limits.sql"):
            await conn.execute((MIGRATIONS / name).read_text(encoding="utf-8"))
        await conn.executemany(
            "INSERT INTO upstream_servers (name, url, auth_env) VALUES ($1, 'https://mcp.example.com/mcp', $2)",
            [("prefixed", "UPSTREAM_CREDENTIAL_GITHUB"), ("legacy", "DATABASE_URL"), ("none", None)],
        )
        await conn.execute((MIGRATIONS / "0003_upstream_trust.sql").read_text(encoding="utf-8"))
        rows = await conn.fetch(
            "SELECT name, credential, allow_insecure_http, auto_approve, on_change FROM upstream_servers ORDER BY name"
        )
    finally:
        await conn.close()
    # A prefixed variable keeps working as its <NAME>; any other value now names UPSTREAM_CREDENTIAL_<value>,
    # which is not set, so that server fails to connect with a clear message instead of sending the variable.
    assert [tuple(r) for r in rows] == [
        ("legacy", "DATABASE_URL", False, False, "keep"),
        ("none", None, False, False, "keep"),
        ("prefixed", "GITHUB", False, False, "keep"),
    ]
