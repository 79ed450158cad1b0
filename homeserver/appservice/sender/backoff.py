"""Retry intervals for an appservice that does not answer: exponential, capped (as Synapse's
recoverer: 2 s, 4 s, ... up to 512 s), reset by the first success."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class BackoffPolicy:
    """Shared by all queues; tests shorten it."""

    min_s: float = 2.0
    max_s: float = 512.0


class Backoff:
    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self.failures = 0
        self.interval = 0.0  # seconds until the next attempt; 0 while up

    def failed(self) -> float:
        """Record a failure; the delay before the next attempt."""
        if self.failures == 0:
            self.interval = self.policy.min_s
        else:
            self.interval = min(self.interval * 2, self.policy.max_s)
        self.failures += 1
        return self.interval

    def reset(self) -> None:
        self.failures = 0
        self.interval = 0.0

    @property
    def up(self) -> bool:
        return self.failures == 0
