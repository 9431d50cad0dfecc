"""One rate limit for the whole platform: token buckets in PostgreSQL, leased to processes in batches.

Every pod and worker of an app shares one bucket per key (client IP or principal) in an UNLOGGED
table of the database the app already uses, so ``RATE_LIMIT_PER_MINUTE`` holds platform-wide
instead of once per process. A request costs no database round trip in the common case:

- A process *leases* tokens: one atomic ``INSERT ... ON CONFLICT DO UPDATE`` refills the bucket by
  the time elapsed (on the database's clock, the one clock every pod shares), grants
  ``min(asked, available)`` and returns the grant. The process spends them from memory and asks
  again only when its lease is spent. Leases are small (``limit / 50``, at least 1) and expire
  after ``lease_seconds``, so an idle process strands at most that many tokens for that long: the
  platform admits at most the limit, and at least the limit minus processes x lease size.
- An empty bucket is remembered locally until it will hold a token again, so a client over its
  limit costs about one query per refill interval per process, not one per request.
- One query is in flight per process at a time: requests that need tokens while it runs wait for
  the next one, which carries all their keys (and asks for as many tokens as requests wait).
- If the database is down, slow (``timeout``) or lacks the table, the process falls back to its
  own in-memory bucket (the per-process limit), logs the transition once and sets the gauge
  ``mcp_ratelimit_shared`` to 0; it tries the database again every ``retry_seconds``. A limiter
  never fails a request.
- Rows untouched for a full refill period describe full buckets, the same as no row: each process
  deletes them about once a period. In memory, leases live in an LRU of at most ``max_keys``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter, Gauge

from platform_common.db import Database
from platform_common.ratelimit import DEFAULT_MAX_KEYS, RateLimited, RateLimiter

logger = logging.getLogger(__name__)

SHARED = Gauge(
    "mcp_ratelimit_shared",
    "1 while this app's rate limits are shared through PostgreSQL; 0 while a process limits on its own.",
    multiprocess_mode="livemin",
)
FALLBACKS = Counter(
    "mcp_ratelimit_fallbacks",
    "Times a process fell back from the shared rate limit to its own in-memory one.",
)

# The bucket's content after refilling by the time since it was last touched (never above capacity).
# In DO UPDATE every ``b.`` column is the row before this statement; EXCLUDED.granted is what was asked.
_AVAILABLE = (
    "LEAST($3::float8, b.tokens + GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)) * $4::float8)"
)
# A missing row is a full bucket. ``granted`` is stored only so that RETURNING can report the grant.
_LEASE_SQL = f"""
INSERT INTO {{table}} AS b (key, tokens, granted, updated_at)
SELECT asked.key, $3::float8 - asked.n, asked.n, clock_timestamp()
FROM unnest($1::text[], $2::float8[]) AS asked (key, n)
ON CONFLICT (key) DO UPDATE SET
    granted = LEAST(EXCLUDED.granted, FLOOR({_AVAILABLE})),
    tokens = {_AVAILABLE} - LEAST(EXCLUDED.granted, FLOOR({_AVAILABLE})),
    updated_at = clock_timestamp()
RETURNING key, granted, tokens
"""  # noqa: S608 - the table name is checked against [a-z_]+; every value is a parameter
_MAX_KEY_CHARS = 200
_SWEEP_SQL = "DELETE FROM {table} WHERE updated_at < clock_timestamp() - make_interval(secs => $1)"


@dataclass
class _Lease:
    """What this process holds for one key: tokens to spend until ``expires``, or a refusal."""

    tokens: int
    expires: float
    denied_until: float = 0.0
    retry_after: int = 1


class SharedRateLimiter:
    """``per_minute`` requests per key across every process that shares ``table``."""

    def __init__(
        self,
        per_minute: int,
        database: Database,
        table: str,
        *,
        lease_seconds: float = 1.0,
        timeout: float = 0.5,
        retry_seconds: float = 5.0,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not re.fullmatch(r"[a-z_]+", table):
            raise ValueError(f"invalid rate-limit table name: {table!r}")
        self.fallback = RateLimiter(per_minute, max_keys=max_keys, clock=clock)
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.lease_size = max(1, per_minute // 50)
        self.database = database
        self.lease_seconds = lease_seconds
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.max_keys = max_keys
        self._clock = clock
        self._lease_sql = _LEASE_SQL.format(table=table)
        self._sweep_sql = _SWEEP_SQL.format(table=table)
        self._leases: OrderedDict[str, _Lease] = OrderedDict()
        # Keys waiting for the next query, how many requests wait on each, and the query's outcome.
        self._waiting: dict[str, int] = {}
        self._next: asyncio.Future[bool] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._shared = True
        self._retry_at = 0.0
        self._sweep_at = 0.0
        SHARED.set(1)

    async def enforce(self, key: str) -> None:
        """Admit one request of ``key`` or raise ``RateLimited`` (429 with ``Retry-After``)."""
        if len(key) > _MAX_KEY_CHARS or not key.isprintable():
            # A long or NUL-bearing key (a token's ``sub`` is the caller's text) would fail the whole
            # batch's query: PostgreSQL's index row limit, text without NUL. Its digest cannot.
            key = "sha256:" + hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest()
        while True:
            now = self._clock()
            if not self._shared and now < self._retry_at:
                self.fallback.check(key)
                return
            lease = self._leases.get(key)
            if lease is not None and lease.tokens > 0 and now < lease.expires:
                lease.tokens -= 1
                return
            if lease is not None and now < lease.denied_until:
                raise RateLimited(lease.retry_after)
            # Shielded: a caller that goes away must not cancel the query other requests wait on.
            if not await asyncio.shield(self._ask(key)):
                self.fallback.check(key)
                return

    def __len__(self) -> int:
        """Keys this process holds a lease or a refusal for (at most ``max_keys``)."""
        return len(self._leases)

    def _ask(self, key: str) -> asyncio.Future[bool]:
        """Join the next lease query (starting the query loop if idle); resolves to "shared?"."""
        self._waiting[key] = self._waiting.get(key, 0) + 1
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._run_queries())
        return self._next

    async def _run_queries(self) -> None:
        """Send one query per batch of waiting keys until none wait; one query in flight at a time."""
        while self._next is not None:
            waiting, future = self._waiting, self._next
            self._waiting, self._next = {}, None
            # Requests that queued behind a query that just failed need not wait for a second failure.
            retry = self._shared or self._clock() >= self._retry_at
            future.set_result(await self._lease(waiting) if retry else False)

    async def _lease(self, waiting: dict[str, int]) -> bool:
        """Lease tokens for ``waiting`` (key → requests); False when the database did not answer."""
        keys = sorted(waiting)  # one lock order for every process: concurrent batches cannot deadlock
        sizes = [float(min(max(self.lease_size, waiting[key]), self.capacity)) for key in keys]
        try:
            async with asyncio.timeout(self.timeout), self.database.connection() as conn:
                rows = await conn.fetch(self._lease_sql, keys, sizes, self.capacity, self.rate)
                await self._sweep(conn)
        except Exception as exc:  # any failure (down, slow, no table): limit locally
            self._degrade(exc)
            return False
        self._recover()
        now = self._clock()
        for row in rows:
            self._remember(row["key"], int(row["granted"]), float(row["tokens"]), waiting[row["key"]], now)
        return True

    def _remember(self, key: str, granted: int, left: float, asked: int, now: float) -> None:
        """Keep the grant; a bucket that could not serve every waiting request is empty until it refills."""
        lease = _Lease(tokens=granted, expires=now + self.lease_seconds)
        if granted < asked:
            wait = (1.0 - left) / self.rate
            lease.denied_until = now + wait
            lease.retry_after = max(1, math.ceil(wait))
        self._leases[key] = lease
        self._leases.move_to_end(key)
        while len(self._leases) > self.max_keys:
            self._leases.popitem(last=False)

    async def _sweep(self, conn: asyncpg.Connection) -> None:
        """Delete rows idle for a whole refill period (full buckets) about once per period."""
        now = self._clock()
        if now < self._sweep_at:
            return
        period = self.capacity / self.rate
        # Jitter spreads the processes' sweeps over the period instead of lining them up.
        self._sweep_at = now + period * random.uniform(0.5, 1.5)
        await conn.execute(self._sweep_sql, period)

    def _degrade(self, exc: Exception) -> None:
        self._retry_at = self._clock() + self.retry_seconds
        if self._shared:
            self._shared = False
            SHARED.set(0)
            FALLBACKS.inc()
            logger.warning("rate limits are per process until the database answers again (%s)", type(exc).__name__)

    def _recover(self) -> None:
        if not self._shared:
            self._shared = True
            SHARED.set(1)
            logger.info("rate limits are shared through the database again")
