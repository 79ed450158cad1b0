"""`rc_federation`: Synapse's limiter for inbound federation requests, per origin server.

Within a sliding `window_size`, requests past the `sleep_limit`-th are delayed by `sleep_delay`;
at most `concurrent` requests of one origin run at once and the rest queue; when `reject_limit`
requests of an origin are already delayed or queued, further ones get 429 `M_LIMIT_EXCEEDED`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from homeserver.config.sections import FederationRateLimits
from homeserver.core.clock import Clock
from homeserver.core.errors import limit_exceeded


@dataclass
class _Origin:
    semaphore: asyncio.Semaphore
    times: deque[float] = field(default_factory=deque)  # monotonic seconds of recent requests
    waiting: int = 0  # delayed or queued
    active: int = 0


class FederationRateLimiter:
    def __init__(self, clock: Clock, limits: FederationRateLimits) -> None:
        self.clock = clock
        self.limits = limits
        self._origins: dict[str, _Origin] = {}
        self._calls = 0

    def prune(self) -> None:
        """Forget origins with nothing running or waiting and no request inside the window."""
        now, window = self.clock.monotonic(), self.limits.window_size / 1000
        for origin, state in list(self._origins.items()):
            if (
                state.active == 0
                and state.waiting == 0
                and (not state.times or now - state.times[-1] >= window)
            ):
                del self._origins[origin]

    def tracked(self) -> int:
        return len(self._origins)

    @asynccontextmanager
    async def ratelimit(self, origin: str) -> AsyncIterator[None]:
        limits = self.limits
        self._calls += 1
        if self._calls % 256 == 0:
            self.prune()
        state = self._origins.get(origin)
        if state is None:
            state = self._origins[origin] = _Origin(asyncio.Semaphore(limits.concurrent))
        now = self.clock.monotonic()
        window = limits.window_size / 1000
        while state.times and now - state.times[0] >= window:
            state.times.popleft()
        if state.waiting >= limits.reject_limit:
            raise limit_exceeded(limits.window_size)
        state.times.append(now)
        state.waiting += 1
        try:
            if len(state.times) > limits.sleep_limit and limits.sleep_delay > 0:
                await asyncio.sleep(limits.sleep_delay / 1000)
            await state.semaphore.acquire()
        finally:
            state.waiting -= 1
        state.active += 1
        try:
            yield
        finally:
            state.active -= 1
            state.semaphore.release()
