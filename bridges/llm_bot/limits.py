"""Per-user and per-room request rates (sliding one-minute window, in memory) and daily token
budgets (counted in the bot's database, so a restart does not reset them)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bridges.llm_bot.config import LimitsConfig
from bridges.llm_bot.store import BotStore


@dataclass(frozen=True)
class Refusal:
    scope: str  # user_rate | room_rate | user_budget | room_budget
    message: str


class Limiter:
    def __init__(
        self, config: LimitsConfig, store: BotStore, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._windows: dict[str, deque[float]] = {}

    def _retry_after(self, key: str, per_minute: int) -> float | None:
        """None if one more request fits in the window, else seconds until one does."""
        now = self.clock()
        window = self._windows.setdefault(key, deque())
        while window and now - window[0] >= 60.0:
            window.popleft()
        if per_minute > 0 and len(window) >= per_minute:
            return 60.0 - (now - window[0])
        return None

    def check(self, user_id: str, room_id: str) -> Refusal | None:
        """Admit one request (recording it) or say why not, in words a user understands."""
        checks = (
            ("user_rate", f"u:{user_id}", self.config.user_requests_per_minute, "you are sending requests"),
            (
                "room_rate",
                f"r:{room_id}",
                self.config.room_requests_per_minute,
                "this room is sending requests",
            ),
        )
        for scope, key, per_minute, who in checks:
            wait = self._retry_after(key, per_minute)
            if wait is not None:
                return Refusal(
                    scope,
                    f"Rate limit: {who} too fast (at most {per_minute} per minute). "
                    f"Please try again in {max(1, round(wait))} s.",
                )
        if 0 < self.config.user_tokens_per_day <= self.store.usage_today("user", user_id):
            return Refusal(
                "user_budget",
                f"Token budget: you have used your {self.config.user_tokens_per_day} tokens for today. "
                "It resets at midnight UTC.",
            )
        if 0 < self.config.room_tokens_per_day <= self.store.usage_today("room", room_id):
            return Refusal(
                "room_budget",
                f"Token budget: this room has used its {self.config.room_tokens_per_day} tokens for today. "
                "It resets at midnight UTC.",
            )
        now = self.clock()
        self._windows[f"u:{user_id}"].append(now)
        self._windows[f"r:{room_id}"].append(now)
        return None
