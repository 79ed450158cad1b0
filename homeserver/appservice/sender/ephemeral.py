"""Typing, receipts, presence and device-list changes for the appservices that asked for them.

The bus consumers only append the rows to a bounded backlog (oldest dropped: these are best
effort, as in Synapse); one task turns them into events and hands each to the queues of the
appservices interested:

- `m.typing` (`room_id`, `content.user_ids`) and `m.receipt` (`room_id`, content as in /sync,
  private receipts never) for rooms the appservice is interested in;
- `m.presence` (`sender`, `content`) for users in its namespace or sharing a room it is
  interested in;
- device-list changes (MSC3202 `changed`) of the same users, for `org.matrix.msc3202: true`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.appservice.sender.interest import InterestCache, Interested
from homeserver.appservice.sender.queue import AppServiceQueue
from homeserver.core.clock import Clock
from homeserver.core.streams import DeviceListsRow, PresenceStreamRow, ReceiptRow, StreamRow, TypingRow
from homeserver.events import constants as c
from homeserver.services.presence import PresenceService
from homeserver.services.receipts import ReceiptService
from homeserver.state.indexes import MembershipIndex

logger = logging.getLogger(__name__)


class EphemeralRouter:
    MAX_BACKLOG = 10_000

    def __init__(
        self,
        queues: Mapping[str, AppServiceQueue],
        interest: InterestCache,
        receipts: ReceiptService,
        presence: PresenceService,
        memberships: MembershipIndex,
        clock: Clock,
    ) -> None:
        self.ephemeral = {q.id: q for q in queues.values() if q.service.wants_ephemeral}
        self.device_lists = {q.id: q for q in queues.values() if q.service.msc3202}
        self.interest = interest
        self.receipts = receipts
        self.presence = presence
        self.memberships = memberships
        self.clock = clock
        self._backlog: deque[StreamRow] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    @property
    def wanted(self) -> bool:
        return bool(self.ephemeral or self.device_lists)

    # -- bus consumers ----------------------------------------------------------------------------

    def on_rows(self, position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if isinstance(row, ReceiptRow) and row.private:
                continue  # only their owner sees private receipts
            self._backlog.append(row)
        while len(self._backlog) > self.MAX_BACKLOG:
            self._backlog.popleft()
            self.dropped += 1
        if self._backlog:
            self._wake.set()

    # -- the task -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.wanted:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="appservice-ephemeral")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            while self._backlog:
                row = self._backlog.popleft()
                try:
                    await self._route(row)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("appservice ephemeral routing failed for %r", row)
            await self._wake.wait()

    async def _route(self, row: StreamRow) -> None:
        if isinstance(row, TypingRow):
            event: dict[str, Any] = {
                "type": "m.typing",
                "room_id": row.room_id,
                "content": {"user_ids": list(row.user_ids)},
            }
            self._offer(self.ephemeral, await self.interest.for_room(row.room_id), event)
        elif isinstance(row, ReceiptRow):
            interested = await self.interest.for_room(row.room_id)
            if any(q in interested for q in self.ephemeral):
                self._offer(self.ephemeral, interested, await self._receipt_event(row))
        elif isinstance(row, PresenceStreamRow):
            interested = await self._interested_in_user(row.user_id, self.ephemeral)
            if interested:
                state = await self.presence.get_state(row.user_id)
                self._offer(self.ephemeral, interested, self.presence.event(state, self.clock.time_ms()))
        elif isinstance(row, DeviceListsRow) and row.visible_to is None:
            for service_id in await self._interested_in_user(row.user_id, self.device_lists):
                self.device_lists[service_id].offer_device_list_change(row.user_id)

    async def _receipt_event(self, row: ReceiptRow) -> dict[str, Any]:
        ts = self.clock.time_ms()
        current = (await self.receipts.room_receipts(row.room_id)).get(
            (row.receipt_type, row.user_id, row.thread_id or "")
        )
        if current is not None and current.event_id == row.event_id:
            ts = current.ts
        data: dict[str, Any] = {"ts": ts}
        if row.thread_id is not None:
            data["thread_id"] = row.thread_id
        return {
            "type": "m.receipt",
            "room_id": row.room_id,
            "content": {row.event_id: {row.receipt_type: {row.user_id: data}}},
        }

    async def _interested_in_user(self, user_id: str, queues: Mapping[str, AppServiceQueue]) -> Interested:
        """The appservices among `queues` interested in the user: by namespace, or through a
        room the user is joined to (Synapse's is_interested_in_presence)."""
        wanted = set(queues)
        found = set(self.interest.for_user(user_id) & wanted)
        if found == wanted:
            return frozenset(found)
        rooms = await self.memberships.load_user(user_id)
        for room_id, (membership, _) in list(rooms.items()):
            if membership != c.JOIN:
                continue
            found |= await self.interest.for_room(room_id) & wanted
            if found == wanted:
                break
        return frozenset(found)

    @staticmethod
    def _offer(queues: Mapping[str, AppServiceQueue], interested: Interested, event: dict[str, Any]) -> None:
        for service_id in interested:
            queue = queues.get(service_id)
            if queue is not None:
                queue.offer_ephemeral(event)
