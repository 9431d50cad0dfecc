"""The token bucket: limits, refill, Retry-After and bounded memory."""

from __future__ import annotations

import pytest

from platform_common.ratelimit import RateLimited, RateLimiter, build_limiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_limit_then_refuses_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    assert all(limiter.hit("a") is None for _ in range(60))
    assert limiter.hit("a") == 1  # one token per second comes back
    assert limiter.hit("b") is None  # keys are independent
    clock.now += 1.0
    assert limiter.hit("a") is None
    assert limiter.hit("a") is not None


def test_check_raises_a_429_problem_with_retry_after() -> None:
    limiter = RateLimiter(1, clock=Clock())
    limiter.check("k")
    with pytest.raises(RateLimited) as caught:
        limiter.check("k")
    assert caught.value.status_code == 429
    assert caught.value.headers == {"Retry-After": "60"}


def test_idle_keys_are_evicted_and_memory_is_capped() -> None:
    clock = Clock()
    limiter = RateLimiter(60, max_keys=100, clock=clock)
    for i in range(1000):
        limiter.hit(f"ip-{i}")
    assert len(limiter) == 100
    clock.now += 61  # every bucket has refilled: nothing worth remembering
    limiter.hit("fresh")
    assert len(limiter) == 1


def test_zero_means_off() -> None:
    assert build_limiter(0) is None
    assert isinstance(build_limiter(5), RateLimiter)
