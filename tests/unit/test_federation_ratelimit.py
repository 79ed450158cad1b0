"""rc_federation: queueing past `concurrent`, 429 past `reject_limit`, origins kept apart."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.config.sections import FederationRateLimits
from homeserver.core.clock import FakeClock
from homeserver.core.errors import MatrixError
from homeserver.http.federation_ratelimit import FederationRateLimiter


async def test_concurrency_queue_and_reject() -> None:
    limits = FederationRateLimits(
        window_size=1000, sleep_limit=100, sleep_delay=0, reject_limit=1, concurrent=1
    )
    limiter = FederationRateLimiter(FakeClock(), limits)
    release = asyncio.Event()
    entered: list[int] = []

    async def request(n: int) -> None:
        async with limiter.ratelimit("a.example"):
            entered.append(n)
            await release.wait()

    first = asyncio.create_task(request(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(request(2))  # queued behind the first
    await asyncio.sleep(0)
    assert entered == [1]
    with pytest.raises(MatrixError) as info:  # one already waiting: reject_limit reached
        async with limiter.ratelimit("a.example"):
            pass
    assert (info.value.status, info.value.errcode) == (429, "M_LIMIT_EXCEEDED")
    async with limiter.ratelimit("b.example"):  # another origin is not affected
        pass
    release.set()
    await asyncio.gather(first, second)
    assert entered == [1, 2]


async def test_idle_origins_are_forgotten() -> None:
    clock = FakeClock()
    limits = FederationRateLimits(
        window_size=1000, sleep_limit=10, sleep_delay=500, reject_limit=50, concurrent=3
    )
    limiter = FederationRateLimiter(clock, limits)
    async with limiter.ratelimit("a.example"):
        pass
    clock.advance(2000)
    async with limiter.ratelimit("b.example"):
        pass
    clock.advance(2000)
    async with limiter.ratelimit("b.example"):
        pass
    limiter.prune()
    assert limiter.tracked() == 1  # b.example's last request is still inside its window
    clock.advance(1000)
    limiter.prune()
    assert limiter.tracked() == 0
