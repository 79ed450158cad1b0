"""One background task per pusher: woken by new notifications or receipts, processes in order,
waits until `due_at` (clock ms) before trying again after a failure or before a digest is due.

Times come from the injectable clock, so tests drive backoff and digest delays with a fake clock
(`PusherPool.poke()` after advancing it); the real-time wait is only an upper bound between checks.
"""

from __future__ import annotations

import asyncio
import logging

from homeserver.services.push_delivery.deps import DeliveryDeps
from homeserver.storage.stores.pushers import Pusher

logger = logging.getLogger(__name__)

ERROR_RETRY_MS = 10_000  # after an unexpected error (database down...), try again soon


class PusherWorker:
    kind = ""

    def __init__(self, pusher: Pusher, deps: DeliveryDeps) -> None:
        self.pusher = pusher
        self.deps = deps
        self.last_stream_ordering = pusher.last_stream_ordering
        self.failing_since = pusher.failing_since
        self.due_at: int | None = None
        self.stopped = False
        self._pending = True  # catch up from the persisted position at start
        self._poke = asyncio.Event()
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.pusher.key

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pusher-{self.kind}")

    def wake(self) -> None:
        """Something may be new: process when not waiting for `due_at`."""
        self._pending = True
        self._poke.set()

    def poke(self) -> None:
        """Look at the clock again (tests advance a fake clock and poke)."""
        self._poke.set()

    def on_receipt(self) -> None:
        """The user read something (their unread counts went down)."""

    @property
    def idle(self) -> bool:
        """Nothing to do until woken or `due_at` (tests wait for this)."""
        if self._busy:
            return False
        if self.stopped or not self._pending:
            return True
        return self.due_at is not None and self.deps.clock.time_ms() < self.due_at

    async def stop(self, grace: float = 0.0) -> None:
        """Stop; a delivery in flight gets `grace` seconds to finish and record its position (a
        POST cut off after the gateway took it would be sent again after a restart)."""
        self.stopped = True
        self._poke.set()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            if grace > 0 and self._busy:
                await asyncio.wait({task}, timeout=grace)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        clock = self.deps.clock
        while not self.stopped:
            now = clock.time_ms()
            if self.due_at is not None and now < self.due_at:
                await self._sleep(min((self.due_at - now) / 1000, 60.0))
                continue
            self.due_at = None
            if not self._pending:
                await self._sleep(None)
                continue
            self._pending = False
            self._busy = True
            try:
                await self.process()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s pusher of %s failed; retrying", self.kind, self.pusher.user_id)
                self.due_at = clock.time_ms() + ERROR_RETRY_MS
                self._pending = True
            finally:
                self._busy = False

    async def _sleep(self, seconds: float | None) -> None:
        self._poke.clear()
        try:
            await asyncio.wait_for(self._poke.wait(), seconds)
        except TimeoutError:
            pass

    async def process(self) -> None:
        raise NotImplementedError
