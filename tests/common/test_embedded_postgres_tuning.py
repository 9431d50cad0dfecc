"""The embedded PostgreSQL's memory settings follow the machine's (or container's) memory."""

from __future__ import annotations

import asyncpg

from platform_common.embedded_postgres import EmbeddedPostgres, memory_limit, tuning


async def test_the_running_server_has_the_settings_computed_from_this_machine(postgres: EmbeddedPostgres) -> None:
    expected = tuning(memory_limit())
    conn = await asyncpg.connect(postgres.url)
    try:
        same = {
            name: await conn.fetchval("SELECT pg_size_bytes(current_setting($1)) = pg_size_bytes($2)", name, value)
            for name, value in expected.items()
        }
    finally:
        await conn.close()
    assert same == dict.fromkeys(expected, True)


def test_small_machines_keep_the_floors_and_large_ones_the_caps() -> None:
    assert tuning(512 * 1024 * 1024) == {
        "shared_buffers": "128MB",
        "effective_cache_size": "512MB",
        "maintenance_work_mem": "64MB",
        "work_mem": "4MB",
    }
    assert tuning(16 * 1024**3) == {
        "shared_buffers": "2048MB",
        "effective_cache_size": "8192MB",
        "maintenance_work_mem": "1024MB",
        "work_mem": "20MB",
    }
