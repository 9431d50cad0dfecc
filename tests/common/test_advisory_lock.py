"""try_advisory_lock: one session does the once-per-platform work, the others skip it, and it is released."""

from __future__ import annotations

import asyncpg

from platform_common.db import try_advisory_lock


async def test_one_session_holds_the_lock_the_other_skips_and_it_is_released(database_url: str) -> None:
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        async with try_advisory_lock(first, "test:sweep") as held:
            assert held
            async with try_advisory_lock(second, "test:sweep") as other:
                assert not other
            async with try_advisory_lock(second, "test:another") as unrelated:
                assert unrelated
        async with try_advisory_lock(second, "test:sweep") as after:
            assert after  # released when the first block ended
        locks = await first.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert locks == 0
    finally:
        await first.close()
        await second.close()
