"""The shared rate limit against a real PostgreSQL: one budget across processes, and a safe fallback.

Each ``SharedRateLimiter`` here has its own connection pool, exactly as each worker process has.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import REGISTRY

from platform_common.db import Database, migrate
from platform_common.ratelimit import RateLimited
from platform_common.sharedlimit import SharedRateLimiter

TABLE = "tot_rate_limits"


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    await migrate(database_url, "tree_of_thoughts.migrations", table="tot_migrations")
    return database_url


@pytest.fixture
async def databases(migrated_url: str) -> AsyncIterator[list[Database]]:
    pools = [Database(migrated_url, max_size=2) for _ in range(6)]
    yield pools
    for pool in pools:
        await pool.close()


async def admitted(limiter: SharedRateLimiter, key: str) -> bool:
    try:
        await limiter.enforce(key)
    except RateLimited:
        return False
    return True


async def test_six_processes_share_one_budget_per_key(databases: list[Database]) -> None:
    limiters = [SharedRateLimiter(100, database, TABLE) for database in databases]
    started = time.monotonic()
    results = await asyncio.gather(*(admitted(limiters[i % 6], "ip:192.0.2.1") for i in range(300)))
    elapsed = time.monotonic() - started
    # Never more than the bucket plus its refill; at most one stranded lease (2 tokens) per process fewer.
    assert 100 - 6 * 2 <= sum(results) <= 100 + elapsed * 100 / 60 + 1
    # Another client's budget is untouched.
    assert all(await asyncio.gather(*(admitted(limiters[i % 6], "ip:192.0.2.2") for i in range(50))))


async def test_concurrent_requests_for_one_key_share_one_query(databases: list[Database]) -> None:
    limiter = SharedRateLimiter(100, databases[0], TABLE)
    assert all(await asyncio.gather(*(admitted(limiter, "sub:agent") for _ in range(40))))
    conn = await asyncpg.connect(databases[0].url)
    try:
        row = await conn.fetchrow(f"SELECT tokens, granted FROM {TABLE} WHERE key = 'sub:agent'")  # noqa: S608
    finally:
        await conn.close()
    # One query asked for all 40 waiting requests (several small leases would have left a small grant).
    assert row is not None and row["granted"] == 40 and row["tokens"] == pytest.approx(60, abs=0.1)


async def test_an_exhausted_key_is_refused_from_memory_until_it_refills(databases: list[Database]) -> None:
    limiter = SharedRateLimiter(60, databases[0], TABLE)
    assert sum(await asyncio.gather(*(admitted(limiter, "ip:a") for _ in range(61)))) == 60
    # Without its table a query would fail and fall back to admitting locally: refusals come from memory.
    conn = await asyncpg.connect(databases[0].url)
    try:
        await conn.execute(f"DROP TABLE {TABLE}")
    finally:
        await conn.close()
    with pytest.raises(RateLimited) as caught:
        await limiter.enforce("ip:a")
    assert caught.value.headers == {"Retry-After": "1"}
    assert REGISTRY.get_sample_value("mcp_ratelimit_shared") == 1


async def test_without_the_database_each_process_limits_alone_and_says_so_once(
    databases: list[Database], caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(databases[0].url)
    try:
        await conn.execute(f"ALTER TABLE {TABLE} RENAME TO hidden")
        limiter = SharedRateLimiter(10, databases[0], TABLE, retry_seconds=0.2)
        with caplog.at_level(logging.INFO, logger="platform_common.sharedlimit"):
            assert sum([await admitted(limiter, "ip:b") for _ in range(15)]) == 10  # the local bucket
            assert REGISTRY.get_sample_value("mcp_ratelimit_shared") == 0
            await conn.execute(f"ALTER TABLE hidden RENAME TO {TABLE}")
            await asyncio.sleep(0.25)
            assert await admitted(limiter, "ip:c")
        assert REGISTRY.get_sample_value("mcp_ratelimit_shared") == 1
        messages = [record.getMessage() for record in caplog.records]
        assert sum("per process" in message for message in messages) == 1
        assert sum("shared through the database again" in message for message in messages) == 1
    finally:
        await conn.close()


async def test_an_unreachable_database_never_fails_a_request() -> None:
    database = Database("postgresql://nobody:x@127.0.0.1:1/none", timeout=0.5)
    limiter = SharedRateLimiter(5, database, TABLE, timeout=0.3)
    started = time.monotonic()
    assert [await admitted(limiter, "ip:d") for _ in range(7)] == [True] * 5 + [False] * 2
    assert time.monotonic() - started < 2  # one failed attempt, then memory until retry_seconds
    await database.close()


async def test_full_buckets_are_swept_and_memory_is_capped(databases: list[Database]) -> None:
    conn = await asyncpg.connect(databases[0].url)
    try:
        await conn.execute(
            f"INSERT INTO {TABLE} VALUES ('ip:idle', 3, 1, clock_timestamp() - interval '2 minutes')"  # noqa: S608
        )
        limiter = SharedRateLimiter(60, databases[0], TABLE, max_keys=10)
        for i in range(30):
            assert await admitted(limiter, f"ip:10.0.0.{i}")
        keys = {row["key"] for row in await conn.fetch(f"SELECT key FROM {TABLE}")}  # noqa: S608
    finally:
        await conn.close()
    assert "ip:idle" not in keys and "ip:10.0.0.29" in keys
    assert len(limiter) == 10


async def test_a_slow_database_costs_one_short_timeout_then_limits_locally(databases: list[Database]) -> None:
    conn = await asyncpg.connect(databases[0].url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")  # every lease query now blocks
        limiter = SharedRateLimiter(100, databases[0], TABLE, timeout=0.3)
        started = time.monotonic()
        assert all(await asyncio.gather(*(admitted(limiter, "ip:e") for _ in range(20))))
        assert await admitted(limiter, "ip:e")
        assert time.monotonic() - started < 1.0  # one 0.3 s timeout for all of them, not one each
        assert REGISTRY.get_sample_value("mcp_ratelimit_shared") == 0
        await transaction.rollback()
    finally:
        await conn.close()


async def test_keys_postgresql_could_not_store_are_limited_by_their_digest(databases: list[Database]) -> None:
    limiter = SharedRateLimiter(3, databases[0], TABLE)
    for key in ("sub:" + secrets.token_urlsafe(6000), "sub:nul\x00byte"):
        assert [await admitted(limiter, key) for _ in range(4)] == [True, True, True, False]
        assert REGISTRY.get_sample_value("mcp_ratelimit_shared") == 1  # the query succeeded: shared
