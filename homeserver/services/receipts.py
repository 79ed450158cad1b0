"""Read receipts and read markers (client-server API "Receipts", "Read and unread markers").

- `m.read` / `m.read.private` receipts, unthreaded or per thread (`main` or a thread root), stored
  as the latest receipt per (room, type, user, thread) and only ever moving forward: the store's
  upsert refuses an event at or before the stored one.
- `m.fully_read` is the user's room account data `m.fully_read`, also forward only.
- /sync gets one `m.receipt` ephemeral event per room; `m.read.private` receipts reach only their
  owner (both in /sync and in wake-ups: a private receipt wakes only its owner's long-polls).

In memory: the current receipts of recently read rooms (LRU), each room's latest public receipt
position and each user's latest private receipt positions since startup (`ChangeLog`), so an
incremental sync finds the rooms with new receipts without touching the database.

`receipt_hooks` run after a user's read-up-to position in a (room, thread) moves forward, that is
when the new `m.read`/`m.read.private` is ahead of both stored read receipts of that thread (the
unread-counts work resets counts there).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from weakref import WeakValueDictionary

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.core.streams import ReceiptRow, Stream
from homeserver.events import constants as c
from homeserver.metrics.caches import register_cache
from homeserver.replication.bus import StreamBus
from homeserver.services.account_data import AccountDataService
from homeserver.services.changelog import ChangeLog
from homeserver.services.visibility import VisibilityService
from homeserver.state.current import CurrentStateCache
from homeserver.storage.stores.events import EventStore, StoredEvent, relation_of
from homeserver.storage.stores.receipts import Receipt, ReceiptStore
from homeserver.storage.streams import StreamIdGenerator

logger = logging.getLogger(__name__)

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE, FULLY_READ)
MAIN_TIMELINE = "main"
THREAD_REL = "m.thread"
# Relation hops followed to find an event's thread (the spec recommends at most 3).
MAX_RELATION_HOPS = 3

# (user_id, room_id, thread_id or None, event_id, event stream ordering)
ReceiptHook = Callable[[str, str, str | None, str, int], Awaitable[None]]
# (user_id, device_id): the user did something (presence "last active")
ActivityHook = Callable[[str, str | None], Awaitable[None]]
RoomReceipts = dict[tuple[str, str, str], Receipt]


class ReceiptService:
    CACHED_ROOMS = 5000

    def __init__(
        self,
        store: ReceiptStore,
        events: EventStore,
        state: CurrentStateCache,
        visibility: VisibilityService,
        account_data: AccountDataService,
        stream: StreamIdGenerator,
        bus: StreamBus,
        clock: Clock,
    ) -> None:
        self.store = store
        self.events = events
        self.state = state
        self.visibility = visibility
        self.account_data = account_data
        self.stream = stream
        self.bus = bus
        self.clock = clock
        self.receipt_hooks: list[ReceiptHook] = []
        self.activity_hooks: list[ActivityHook] = []
        # room_id -> position of its latest public receipt (changes since startup)
        self.public_log: ChangeLog[str] = ChangeLog(stream.current)
        # user_id -> room_id -> position of the user's latest private receipt there
        self._private: dict[str, dict[str, int]] = {}
        # room_id -> its current receipts, least recently used first
        self._rooms: OrderedDict[str, RoomReceipts] = OrderedDict()
        self._metric = register_cache("room_receipts", self, lambda s: len(s._rooms), self.CACHED_ROOMS)
        # write generation per room, so a slow load never caches rows older than a write
        self._generation = 0
        self._room_generation: dict[str, int] = {}
        # one lock per (user, room) while in use (dropped with its last reference)
        self._marker_locks: WeakValueDictionary[tuple[str, str], asyncio.Lock] = WeakValueDictionary()

    # -- client API ------------------------------------------------------------------------------

    async def post_receipt(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
    ) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}."""
        if receipt_type not in RECEIPT_TYPES:
            raise invalid_param(f"Receipt type must be one of {', '.join(RECEIPT_TYPES)}")
        if thread_id is not None and receipt_type == FULLY_READ:
            raise invalid_param(f"thread_id is not compatible with {FULLY_READ} receipts")
        stored = await self._target_event(user_id, room_id, event_id, required=receipt_type == FULLY_READ)
        if stored is None:
            return  # unknown event: ignored, as Synapse does
        if thread_id is not None and not await self._event_in_thread(stored, thread_id):
            raise invalid_param(f"event_id {event_id} is not related to thread {thread_id}")
        await self._activity(user_id, device_id)
        if receipt_type == FULLY_READ:
            await self._set_fully_read(user_id, room_id, stored)
        else:
            await self._store_receipt(user_id, room_id, receipt_type, stored, thread_id)

    async def set_read_markers(
        self, user_id: str, device_id: str | None, room_id: str, markers: dict[str, str]
    ) -> None:
        """POST /rooms/{roomId}/read_markers: any of m.fully_read, m.read, m.read.private."""
        await self._activity(user_id, device_id)
        for receipt_type in (FULLY_READ, READ, READ_PRIVATE):
            event_id = markers.get(receipt_type)
            if not event_id:
                continue
            stored = await self._target_event(user_id, room_id, event_id, required=receipt_type == FULLY_READ)
            if stored is None:
                continue
            if receipt_type == FULLY_READ:
                await self._set_fully_read(user_id, room_id, stored)
            else:
                await self._store_receipt(user_id, room_id, receipt_type, stored, None)

    async def receive_remote(
        self, user_id: str, room_id: str, event_id: str, thread_id: str | None, ts: int
    ) -> bool:
        """An `m.read` receipt from an m.receipt EDU (origin, ACL and the user's server checked by
        the caller). Stored like a local one when the user is joined and the event is a known
        event of the room (a receipt needs the event's position to move only forward); it wakes
        local members through the receipts stream. False when ignored."""
        snapshot = await self.state.get(room_id)
        if snapshot is None or snapshot.membership(user_id) != c.JOIN:
            return False
        stored = await self.events.get_event(event_id)
        if stored is None or stored.event.room_id != room_id or stored.outlier:
            return False
        await self._store_receipt(user_id, room_id, READ, stored, thread_id, ts=ts, remote=True)
        return True

    async def _activity(self, user_id: str, device_id: str | None) -> None:
        for hook in self.activity_hooks:
            try:
                await hook(user_id, device_id)
            except Exception:
                logger.exception("receipt activity hook failed")

    async def _target_event(
        self, user_id: str, room_id: str, event_id: str, *, required: bool
    ) -> StoredEvent | None:
        """The receipted event, after checking the user is in the room and may see it.

        An event that is unknown or in another room is None, or 404 when `required`."""
        snapshot = await self.state.get(room_id)
        if snapshot is None or snapshot.membership(user_id) != c.JOIN:
            raise forbidden(f"User {user_id} not in room {room_id}")
        stored = await self.events.get_event(event_id)
        if stored is None or stored.event.room_id != room_id or stored.outlier:
            if required:
                raise not_found(f"Could not find event {event_id} in room {room_id}")
            return None
        if not await self.visibility.can_see_event(user_id, stored):
            raise forbidden("You don't have permission to access that event.")
        return stored

    async def _event_in_thread(self, stored: StoredEvent, thread_id: str) -> bool:
        """Whether `thread_id` suits the event: `main` for events outside threads; a thread root for
        events in that thread, the root itself, or events related (any relation) to the root."""
        chain = [stored.event_id]
        thread = MAIN_TIMELINE
        event = stored.event
        for _ in range(MAX_RELATION_HOPS):
            target, rel_type = relation_of(event)
            if target is None:
                break
            if rel_type == THREAD_REL:
                thread = target
                break
            chain.append(target)
            parent = await self.events.get_event(target)
            if parent is None:
                break
            event = parent.event
        if thread_id == MAIN_TIMELINE:
            return thread == MAIN_TIMELINE
        return thread == thread_id or thread_id in chain

    # -- fully read marker -----------------------------------------------------------------------

    async def _set_fully_read(self, user_id: str, room_id: str, stored: StoredEvent) -> None:
        key = (user_id, room_id)
        lock = self._marker_locks.get(key)
        if lock is None:
            lock = self._marker_locks[key] = asyncio.Lock()
        async with lock:
            existing = await self.account_data.get(user_id, room_id, FULLY_READ)
            old_id = existing.get("event_id") if existing else None
            if isinstance(old_id, str):
                old = await self.events.get_event(old_id)
                if old is not None and old.stream_ordering >= stored.stream_ordering:
                    return
            await self.account_data.put(
                user_id, room_id, FULLY_READ, {"event_id": stored.event_id}, internal=True
            )

    # -- receipts --------------------------------------------------------------------------------

    async def _store_receipt(
        self,
        user_id: str,
        room_id: str,
        receipt_type: str,
        stored: StoredEvent,
        thread_id: str | None,
        *,
        ts: int | None = None,
        remote: bool = False,
    ) -> None:
        async with self.stream.next() as stream_id:
            receipt = Receipt(
                room_id,
                receipt_type,
                user_id,
                thread_id,
                stored.event_id,
                stored.stream_ordering,
                self.clock.time_ms() if ts is None else ts,
                stream_id,
            )
            moved = await self.store.upsert_forward(receipt)
            if moved:
                self._remember(receipt)
        if not moved:
            return
        row = ReceiptRow(
            stream_id,
            room_id,
            receipt_type,
            user_id,
            stored.event_id,
            thread_id,
            private=receipt_type == READ_PRIVATE,
        )
        # The hooks reset a local user's unread counts (a remote user has none here). They run
        # before the announcement, so a /sync it wakes (here or on a worker) reads the new counts.
        if not remote and self.receipt_hooks and await self._read_position_moved(receipt):
            for hook in self.receipt_hooks:
                try:
                    await hook(user_id, room_id, thread_id, stored.event_id, stored.stream_ordering)
                except Exception:
                    logger.exception("receipt hook failed")
        # Publish (and so wake) only once readers can see it (not while an earlier receipt is in flight).
        self.stream.when_visible(
            stream_id, lambda: self.bus.publish(Stream.RECEIPTS, self.stream.current, [row])
        )

    async def _read_position_moved(self, receipt: Receipt) -> bool:
        """False when the user's other read receipt type for the thread is at or after this one."""
        other_type = READ if receipt.receipt_type == READ_PRIVATE else READ_PRIVATE
        rows = await self.room_receipts(receipt.room_id)
        other = rows.get((other_type, receipt.user_id, receipt.thread_id or ""))
        return other is None or other.event_stream_ordering < receipt.event_stream_ordering

    def apply_replicated(self, rows: Sequence[ReceiptRow]) -> None:
        """Scale-out: receipts main stored. A worker holds no data for them yet, so it drops the
        rooms' cached receipts (the next read loads them) and records the change positions the
        incremental /sync reads, before the notifier's woken syncs run."""
        for row in rows:
            self._generation += 1
            self._room_generation[row.room_id] = self._generation
            self._rooms.pop(row.room_id, None)
            if row.private:
                per_room = self._private.setdefault(row.user_id, {})
                per_room[row.room_id] = max(per_room.get(row.room_id, 0), row.stream_id)
            else:
                self.public_log.add(row.stream_id, row.room_id)

    def _remember(self, receipt: Receipt) -> None:
        room_id = receipt.room_id
        self._generation += 1
        self._room_generation[room_id] = self._generation
        rows = self._rooms.get(room_id)
        if rows is not None:
            current = rows.get(receipt.key)
            if current is None or current.stream_id < receipt.stream_id:
                rows[receipt.key] = receipt
        if receipt.receipt_type == READ_PRIVATE:
            per_room = self._private.setdefault(receipt.user_id, {})
            per_room[room_id] = max(per_room.get(room_id, 0), receipt.stream_id)
        else:
            self.public_log.add(receipt.stream_id, room_id)

    async def room_receipts(self, room_id: str) -> RoomReceipts:
        """The room's current receipts, keyed by (type, user, thread or '')."""
        rows = self._rooms.get(room_id)
        if rows is not None:
            self._metric.hits += 1
            self._rooms.move_to_end(room_id)
            return rows
        self._metric.misses += 1
        generation = self._generation
        loaded = {r.key: r for r in await self.store.list_room(room_id)}
        self._cache(room_id, loaded, generation)
        return self._rooms.get(room_id, loaded)

    async def prefetch(self, room_ids: Iterable[str]) -> None:
        """Load the receipts of the rooms not cached yet in one go (initial sync)."""
        room_ids = list(room_ids)
        missing = [r for r in room_ids if r not in self._rooms]
        self._metric.misses += len(missing)
        self._metric.hits += len(room_ids) - len(missing)
        if not missing:
            return
        generation = self._generation
        found = await self.store.list_rooms(missing)
        for room_id, receipts in found.items():
            self._cache(room_id, {r.key: r for r in receipts}, generation)

    def _cache(self, room_id: str, rows: RoomReceipts, generation: int) -> None:
        if room_id in self._rooms or self._room_generation.get(room_id, 0) > generation:
            return  # written while loading: the next read loads again
        self._rooms[room_id] = rows
        while len(self._rooms) > self.CACHED_ROOMS:
            self._rooms.popitem(last=False)
            self._metric.evicted_size += 1

    async def get_user_receipts(self, user_id: str, room_id: str) -> list[Receipt]:
        rows = await self.room_receipts(room_id)
        return [r for r in rows.values() if r.user_id == user_id]

    # -- /sync -----------------------------------------------------------------------------------

    async def rooms_changed(self, user_id: str, after: int, joined: set[str]) -> set[str]:
        """Joined rooms with receipts newer than `after` that the user may see."""
        changed = self.public_log.changed(after, joined)
        if changed is None:  # token from before this process started
            return await self.store.rooms_changed_since(after, user_id) & joined
        private = self._private.get(user_id)
        if private:
            changed.update(r for r, pos in private.items() if pos > after and r in joined)
        return changed

    async def room_events(self, user_id: str, room_id: str, after: int | None) -> list[dict[str, Any]]:
        """The room's `m.receipt` events for the user, one per thread (unthreaded first), with the
        receipts newer than `after` (all when None): one event per (room, thread), as the spec
        suggests, so a user's unthreaded and threaded receipts on one event never collide."""
        rows = await self.room_receipts(room_id)
        by_thread: dict[str, dict[str, Any]] = {}
        for r in rows.values():
            if after is not None and r.stream_id <= after:
                continue
            if r.receipt_type == READ_PRIVATE and r.user_id != user_id:
                continue
            data: dict[str, Any] = {"ts": r.ts}
            if r.thread_id is not None:
                data["thread_id"] = r.thread_id
            content = by_thread.setdefault(r.thread_id or "", {})
            content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
        return [{"type": "m.receipt", "content": by_thread[t]} for t in sorted(by_thread)]


def check_thread_id(body: dict[str, Any]) -> str | None:
    """The optional `thread_id` of a receipt request body: a non-empty string when present."""
    if "thread_id" not in body:
        return None
    thread_id = body["thread_id"]
    if not isinstance(thread_id, str) or not thread_id:
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id field must be a non-empty string")
    return thread_id
