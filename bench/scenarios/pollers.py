"""Long-polling receivers shared by the round-two scenarios: each user loops GET /sync?since=…
(quiet filter) and records, per message key, when it arrived; the scenario decides which keys each
user should see and turns the arrivals into delays, missing and duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from bench.client import Client, User

LONG_POLL_MS = 30_000


@dataclass
class Poller:
    """One user's long-poll loop; `arrivals[key]` is the monotonic time it first saw message key."""

    user: User
    since: str
    prefix: str
    arrivals: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    requests: int = 0
    errors: int = 0
    limited: int = 0

    def take(self, body: dict[str, Any], now: float) -> None:
        for room in (((body.get("rooms") or {}).get("join")) or {}).values():
            timeline = room.get("timeline") or {}
            if timeline.get("limited") and self.arrivals:
                self.limited += 1
            for ev in timeline.get("events") or []:
                text = (ev.get("content") or {}).get("body")
                if ev.get("type") != "m.room.message" or not isinstance(text, str):
                    continue
                if not text.startswith(self.prefix):
                    continue
                key = text[len(self.prefix) :]
                if key in self.arrivals:
                    self.duplicates += 1
                else:
                    self.arrivals[key] = now

    async def loop(self, c: Client, flt: str, stop: asyncio.Event, max_polls: int) -> None:
        for _ in range(max_polls):
            if stop.is_set():
                return
            try:
                self.requests += 1
                body = await c.sync(self.user, since=self.since, timeout_ms=LONG_POLL_MS, filter_=flt)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            self.since = str(body["next_batch"])
            self.take(body, time.monotonic())


async def start_polls(
    c: Client, pollers: list[Poller], flt: str, stop: asyncio.Event, *, batch: int = 200, every_s: float = 0.2
) -> list[asyncio.Future[None]]:
    """Open the long-polls in batches (a burst of thousands of connects helps nobody)."""
    tasks: list[asyncio.Future[None]] = []
    for i in range(0, len(pollers), batch):
        for p in pollers[i : i + batch]:
            tasks.append(asyncio.ensure_future(p.loop(c, flt, stop, 100_000)))
        await asyncio.sleep(every_s)
    return tasks


async def stop_polls(tasks: list[asyncio.Future[None]], stop: asyncio.Event) -> None:
    stop.set()
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


async def wait_delivered(pollers: list[Poller], expected: dict[str, set[str]], deadline_s: float) -> None:
    """Wait (bounded) until every poller has every key it should have (`expected[user_id]`)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if all(expected.get(p.user.user_id, set()) <= p.arrivals.keys() for p in pollers):
            return
        await asyncio.sleep(0.1)
