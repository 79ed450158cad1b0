"""The running pushers: one worker per stored pusher, woken after each events commit for the local
members of the rooms it touched, and after the user's read receipts (badge updates).

Workers start from their persisted position, so a restart delivers what was pending exactly once.
Nothing here runs in the event sender's path: `on_events` only sets flags; the POSTs and emails run
in the workers' own tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from homeserver.core.streams import EventsRow, StreamRow
from homeserver.events import constants as c
from homeserver.services.push_delivery import metrics
from homeserver.services.push_delivery.deps import DeliveryDeps
from homeserver.services.push_delivery.email_pusher import EmailPusher
from homeserver.services.push_delivery.http_pusher import HttpPusher
from homeserver.services.push_delivery.worker import PusherWorker
from homeserver.storage.stores.pushers import Pusher

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]
SHUTDOWN_GRACE = 5.0  # seconds a delivery in flight may take to finish at shutdown


class PusherPool:
    def __init__(self, deps: DeliveryDeps, *, enabled: bool) -> None:
        self.deps = deps
        self.enabled = enabled
        self.workers: dict[Key, PusherWorker] = {}
        self._by_user: dict[str, dict[Key, PusherWorker]] = {}
        self._started = False
        metrics.pushers.bind(self, lambda p: p._count(all_=True))
        metrics.pending.bind(self, lambda p: p._count(all_=False))

    def _count(self, *, all_: bool) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {("http",): 0, ("email",): 0}
        for worker in self.workers.values():
            if all_ or not worker.idle or worker.due_at is not None:
                counts[(worker.kind,)] = counts.get((worker.kind,), 0) + 1
        return counts

    async def start(self) -> None:
        if not self.enabled:
            return
        self._started = True
        for pusher in await self.deps.store.list_all():
            self._start(pusher)

    async def stop(self) -> None:
        self._started = False
        workers = list(self.workers.values())
        self.workers.clear()
        self._by_user.clear()
        await asyncio.gather(*(w.stop(grace=SHUTDOWN_GRACE) for w in workers))

    def _make(self, pusher: Pusher) -> PusherWorker | None:
        if pusher.kind == "http":
            return HttpPusher(pusher, self.deps)
        if pusher.kind == "email" and self.deps.email.enable_notifs:
            return EmailPusher(pusher, self.deps)
        return None

    def _start(self, pusher: Pusher) -> None:
        worker = self._make(pusher)
        if worker is None:
            return
        self.workers[pusher.key] = worker
        self._by_user.setdefault(pusher.user_id, {})[pusher.key] = worker
        worker.start()

    async def _stop(self, key: Key) -> None:
        worker = self.workers.pop(key, None)
        if worker is None:
            return
        user_workers = self._by_user.get(key[0], {})
        user_workers.pop(key, None)
        if not user_workers:
            self._by_user.pop(key[0], None)
        await worker.stop()

    # -- pusher changes (PusherService hooks) ----------------------------------------------------

    async def on_pusher_changed(self, user_id: str, app_id: str, pushkey: str) -> None:
        """A pusher was set, replaced or removed: restart its worker from the stored row. The same
        app_id/pushkey of other users may have been removed with it (a device changed hands)."""
        if not self._started:
            return
        keys = {k for k in self.workers if k[1] == app_id and k[2] == pushkey}
        keys.add((user_id, app_id, pushkey))
        for key in keys:
            await self._stop(key)
            pusher = await self.deps.store.get(*key)
            if pusher is not None:
                self._start(pusher)

    # -- wake-ups --------------------------------------------------------------------------------

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer: wake the pushers of local members of the rooms written to (the
        push actions committed with the events; each worker reads its own)."""
        if not self._by_user:
            return
        rooms: set[str] = set()
        users: set[str] = set()
        for row in rows:
            if not isinstance(row, EventsRow) or row.outlier or row.rejected or row.soft_failed:
                continue
            rooms.add(row.room_id)
            if row.type == c.MEMBER and row.state_key is not None:
                users.add(row.state_key)  # an invite notifies someone not yet in the room
        for room_id in rooms:
            snapshot = self.deps.state.cached(room_id)
            if snapshot is None:
                users.update(self._by_user)  # not cached: cheaper to let every pusher look
                break
            members = snapshot.memberships
            if len(members) < len(self._by_user):
                users.update(u for u, m in members.items() if m == c.JOIN)
            else:
                users.update(u for u in self._by_user if members.get(u) == c.JOIN)
        for user_id in users:
            for worker in self._by_user.get(user_id, {}).values():
                worker.wake()

    async def on_read(self, user_id: str, _room_id: str, _thread: str | None, _event: str, _pos: int) -> None:
        """Receipt hook (after the unread counts moved): badge updates."""
        for worker in self._by_user.get(user_id, {}).values():
            worker.on_receipt()

    def poke(self) -> None:
        """Every worker looks at the clock again (tests advance a fake clock)."""
        for worker in self.workers.values():
            worker.poke()

    async def wait_idle(self, within: float = 10.0) -> None:
        """Until every worker has nothing to do before its `due_at` (tests: the condition spans
        several workers' flags, so it is checked rather than awaited)."""
        async with asyncio.timeout(within):
            while not all(w.idle for w in self.workers.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
