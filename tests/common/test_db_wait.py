"""Start-up migrations wait for an unreachable database (DATABASE_WAIT_SECONDS) instead of crashing at once."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from platform_common.db import migrate

PACKAGE = "tool_registry.migrations"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.netloc.rsplit(':', 1)[0]}:{port}"))


async def forward(port: int, target_port: int) -> asyncio.Server:
    """A TCP forwarder 127.0.0.1:port -> 127.0.0.1:target_port: the database "comes up" when it starts."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_migrations_wait_for_a_database_that_comes_up(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    target = urlsplit(database_url).port
    assert target is not None

    async def come_up_later() -> asyncio.Server:
        await asyncio.sleep(1.5)
        return await forward(port, target)

    caplog.set_level(logging.WARNING, "platform_common.db")
    started = time.monotonic()
    server_task = asyncio.create_task(come_up_later())
    applied = await migrate(with_port(database_url, port), PACKAGE, table="registry_migrations", wait_seconds=30)
    elapsed = time.monotonic() - started
    server = await server_task
    server.close()
    assert applied and applied[0].startswith("0001_")
    assert 1.5 <= elapsed < 10
    retries = [r.getMessage() for r in caplog.records if "database unreachable (attempt" in r.getMessage()]
    assert len(retries) >= 2, retries  # backoff 0.5 s, 1 s, ...: each failed attempt says why
    assert "ConnectionRefusedError" in retries[0] or "OSError" in retries[0]


async def test_migrations_give_up_after_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://u:p@127.0.0.1:{free_port()}/db"
    caplog.set_level(logging.WARNING, "platform_common.db")
    started = time.monotonic()
    with pytest.raises(OSError):
        await migrate(url, PACKAGE, table="registry_migrations", wait_seconds=2)
    assert 2 <= time.monotonic() - started < 5
    assert any("after" in r.getMessage() and "DATABASE_WAIT_SECONDS" in r.getMessage() for r in caplog.records)


async def test_no_wait_by_default() -> None:
    started = time.monotonic()
    with pytest.raises(OSError):
        await migrate(f"postgresql://u:p@127.0.0.1:{free_port()}/db", PACKAGE, table="registry_migrations")
    assert time.monotonic() - started < 1.5


async def test_database_password_joins_a_password_free_url(database_url: str) -> None:
    """DATABASE_URL without a password + DATABASE_PASSWORD from another Secret (GitOps-managed credentials)."""
    import asyncpg

    from platform_common.settings import BaseSettings, with_password

    parts = urlsplit(database_url)
    password = parts.password
    assert password
    bare = urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))
    settings = BaseSettings.from_env({"DATABASE_URL": bare, "DATABASE_PASSWORD": password})
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    # Any character survives (percent-encoded), and DATABASE_PASSWORD replaces a password already in the URL.
    odd = with_password("postgresql://mcp:old@db:5432/mcp?sslmode=require", "p@ss:w/rd%?#")
    assert odd == "postgresql://mcp:p%40ss%3Aw%2Frd%25%3F%23@db:5432/mcp?sslmode=require"
    assert urlsplit(odd).password and "p%40ss" in odd
