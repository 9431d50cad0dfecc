"""Per-caller request rate limits: a token bucket per key, in this process's memory.

``RateLimiter`` alone is per process: with N pods and W workers a caller could make up to
N*W*limit requests a minute. Apps with a database use ``platform_common.sharedlimit`` instead,
which shares the buckets through PostgreSQL and falls back to this class when the database is
unreachable; apps without one (ToT's in-memory mode, tests) use this class directly.

Memory is bounded: buckets live in an LRU of at most ``max_keys`` entries, and a bucket that has
refilled completely is indistinguishable from a missing one, so idle keys are dropped for free.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from platform_common.problems import ProblemError

DEFAULT_MAX_KEYS = 10_000


class RateLimited(ProblemError):
    """429 with ``Retry-After``: the caller spent its budget for now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            "Too Many Requests",
            detail=f"Rate limit exceeded; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class Limiter(Protocol):
    """What the auth middleware needs: admit one request of ``key`` or raise ``RateLimited``."""

    async def enforce(self, key: str) -> None: ...


class RateLimiter:
    """``per_minute`` requests per key, with bursts of up to ``per_minute`` (a token bucket).

    A token bucket (rather than a fixed window) has no boundary at which a client can send two
    windows' worth of requests back to back, and needs two floats per key.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive (0 means: build no limiter)")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_keys = max_keys
        self._clock = clock
        # key → (tokens left, time of last update); most recently used at the end.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def hit(self, key: str) -> int | None:
        """Spend one token of ``key``'s bucket; ``None`` when allowed, else seconds to wait."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return None
        self._store(key, tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def check(self, key: str) -> None:
        """``hit`` that raises ``RateLimited`` (a 429 problem) when over the limit."""
        retry_after = self.hit(key)
        if retry_after is not None:
            raise RateLimited(retry_after)

    async def enforce(self, key: str) -> None:
        """``check`` as a ``Limiter``."""
        self.check(key)

    def __len__(self) -> int:
        return len(self._buckets)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._evict(now)

    def _evict(self, now: float) -> None:
        # Full buckets carry no information; drop them from the cold end first, then cap the size.
        while self._buckets:
            oldest_key, (tokens, last) = next(iter(self._buckets.items()))
            if min(self.capacity, tokens + (now - last) * self.rate) < self.capacity:
                break
            del self._buckets[oldest_key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


def build_limiter(per_minute: int) -> RateLimiter | None:
    """The limiter for ``RATE_LIMIT_PER_MINUTE`` (``None`` when it is 0: limits off)."""
    return RateLimiter(per_minute) if per_minute > 0 else None
