"""Token-bucket rate limiting (Synapse's `rc_*` semantics: per_second refill, burst_count size)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from homeserver.core.clock import Clock
from homeserver.core.errors import limit_exceeded
from homeserver.metrics import counter

# Synapse's name (it counts its federation limiter there); here: every rc_* class that said no.
rejected = counter(
    "synapse_rate_limit_reject", "Requests rejected by the rate limiter", ["rate_limiter_name"]
)


@dataclass(frozen=True, slots=True)
class Bucket:
    per_second: float
    burst_count: float


class RateLimiter:
    """In-process buckets keyed by (class, key). Bounded memory: least recently used keys drop."""

    MAX_KEYS = 100_000

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # key -> (tokens used, last update in seconds)
        self._state: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def check(
        self, limit_class: str, key: str, bucket: Bucket, *, cost: float = 1.0, update: bool = True
    ) -> None:
        """Raise 429 M_LIMIT_EXCEEDED when the action would overflow the bucket."""
        if bucket.per_second <= 0:
            return
        now = self.clock.monotonic()
        state_key = (limit_class, key)
        used, last = self._state.get(state_key, (0.0, now))
        used = max(0.0, used - (now - last) * bucket.per_second)
        if used + cost > bucket.burst_count:
            retry_after = (used + cost - bucket.burst_count) / bucket.per_second
            rejected.labels(limit_class).inc()
            raise limit_exceeded(int(retry_after * 1000) + 1)
        if update:
            self._state[state_key] = (used + cost, now)
            self._state.move_to_end(state_key)
            if len(self._state) > self.MAX_KEYS:
                self._state.popitem(last=False)

    def reset(self, limit_class: str, key: str) -> None:
        self._state.pop((limit_class, key), None)
