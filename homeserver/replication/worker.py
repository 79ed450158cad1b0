"""A worker following main's streams over Redis, catching up from the database after a gap.

One task reads the subscribed channels and applies each announcement in order: caches that the
main process updates in place (current state, the event cache, typing and presence) are refreshed
first, then the announcement is published on the worker's own StreamBus so its indexes, notifier
and consumers see exactly what they see in one process. A message whose `prev` is above the
worker's position means some were missed: the rows in between are read back with
`StreamBus.rows_since` before it. After a reconnect the worker catches up to the database's
positions (it may have missed anything), and asks main for the typing state (kept in memory only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from homeserver.core.errors import DatabaseUnavailableError
from homeserver.core.streams import (
    AccountDataRow,
    DeviceListsRow,
    EventsRow,
    PresenceStreamRow,
    ReceiptRow,
    Stream,
    StreamRow,
    ToDeviceRow,
    TypingRow,
    row_from_json,
)
from homeserver.replication.bus import StreamBus
from homeserver.replication.redis_link import (
    RETRY_SECONDS,
    invalidations_channel,
    positions_channel,
    stream_channel,
)

logger = logging.getLogger(__name__)

CATCH_UP_PAGE = 1000


def row_position(row: StreamRow) -> int:
    if isinstance(row, EventsRow):
        return row.stream_ordering
    if isinstance(row, AccountDataRow | ReceiptRow | DeviceListsRow):
        return row.stream_id
    if isinstance(row, TypingRow | PresenceStreamRow | ToDeviceRow):
        return row.position
    raise TypeError(type(row))


class StateCache(Protocol):
    """The current-state snapshots (state/current.py)."""

    def cached(self, room_id: str) -> Any: ...
    def evict(self, room_id: str) -> None: ...
    async def get(self, room_id: str) -> Any: ...
    def publish(self, snapshot: Any) -> None: ...


class EventCache(Protocol):
    def invalidate(self, event_id: str) -> None: ...


class Positioned(Protocol):
    current_stream: int


class Advancing(Protocol):
    def advance_to(self, position: int) -> None: ...


class TypingMirror(Protocol):
    position: int

    def load_snapshot(self, position: int, rooms: dict[str, list[str]]) -> set[str]: ...
    def apply_replicated(self, row: TypingRow) -> None: ...
    def typing_users(self, room_id: str) -> list[str]: ...


class PresenceMirror(Protocol):
    async def apply_replicated(self, position: int, user_ids: Any, rows: dict[str, list[Any]]) -> None: ...


@dataclass
class ReplicaTargets:
    """What a worker refreshes when main announces a change (built by scaleout/setup.py)."""

    bus: StreamBus
    state: StateCache
    events: EventCache
    persister: Positioned
    generators: dict[Stream, Advancing]
    typing: TypingMirror
    presence: PresenceMirror
    # device-list changes: whom to wake needs a membership lookup (DeviceListService's)
    wake_device_lists: Callable[[int, Sequence[StreamRow]], Awaitable[None]]
    db_positions: Callable[[], Awaitable[dict[Stream, int]]]
    typing_snapshot: Callable[[], Awaitable[dict[str, Any]]]
    invalidation_handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]]


class WorkerFeed:
    def __init__(
        self, client: aioredis.Redis, server_name: str, streams: frozenset[Stream], targets: ReplicaTargets
    ) -> None:
        self.client = client
        self.server_name = server_name
        self.streams = streams
        self.t = targets
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.caught_up_rows = 0
        self._waiting_for_db = False
        # Announcement delay (commit on main -> applied here), for the bench and metrics.
        self.last_lag_ms = 0.0

    @property
    def channels(self) -> list[str]:
        names = [stream_channel(self.server_name, s) for s in sorted(self.streams)]
        return [*names, positions_channel(self.server_name), invalidations_channel(self.server_name)]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="replication-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def _run(self) -> None:
        first = True
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self.channels)
                # Subscribed first, then caught up: nothing committed in between is lost.
                await self.catch_up_to_database()
                if self._waiting_for_db:
                    logger.info("replication: the database is back, caught up")
                    self._waiting_for_db = False
                if not first:
                    logger.info("replication: Redis connection restored, caught up from the database")
                first = False
                self.connected.set()
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None:
                        await self._handle(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    logger.warning(
                        "replication: lost Redis (%s); retrying, will catch up from the database", exc
                    )
                self.connected.clear()
                self.reconnects += 1
                await asyncio.sleep(RETRY_SECONDS)
            except DatabaseUnavailableError as exc:
                # PostgreSQL restarting: what was not applied is read back once it answers again
                # (the position moves only after a batch is applied), so this is no error.
                if not self._waiting_for_db:
                    logger.warning("replication: waiting for the database (%s); will catch up", exc)
                    self._waiting_for_db = True
                self.connected.clear()
                await asyncio.sleep(RETRY_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop replication for good
                logger.exception("replication: applying an announcement failed; catching up")
                self.connected.clear()
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _handle(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        message = json.loads(data)
        if name == positions_channel(self.server_name):
            for value, position in message["positions"].items():
                stream = Stream(value)
                if stream in self.streams and position > self.t.bus.positions[stream]:
                    await self.catch_up(stream, position)
            return
        if name == invalidations_channel(self.server_name):
            handler = self.t.invalidation_handlers.get(message.get("kind", ""))
            if handler is not None:
                await handler(message)
            return
        stream = Stream(name.rsplit(":", 1)[1])
        position, prev = int(message["p"]), int(message["prev"])
        mine = self.t.bus.positions[stream]
        if position <= mine:
            return  # already read from the database
        if prev > mine:
            await self.catch_up(stream, prev)
            mine = self.t.bus.positions[stream]
        rows = [row_from_json(stream, r) for r in message["rows"]]
        rows = [r for r in rows if row_position(r) > mine]
        await self.apply(stream, position, rows, message.get("x"))

    # -- catch-up --------------------------------------------------------------------------------

    async def catch_up_to_database(self) -> None:
        positions = await self.t.db_positions()
        for stream in sorted(self.streams):
            if stream is Stream.TYPING:
                await self._load_typing()
            elif stream in positions and positions[stream] > self.t.bus.positions[stream]:
                await self.catch_up(stream, positions[stream])

    async def _load_typing(self) -> None:
        snapshot = await self.t.typing_snapshot()
        changed = self.t.typing.load_snapshot(int(snapshot["position"]), snapshot["rooms"])
        position = self.t.typing.position
        rows = [TypingRow(position, r, tuple(self.t.typing.typing_users(r))) for r in sorted(changed)]
        self.t.bus.publish(Stream.TYPING, position, rows)  # wakes the syncs waiting in those rooms

    async def catch_up(self, stream: Stream, upto: int) -> None:
        """Read the rows after our position up to `upto` from the database and apply them."""
        if stream is Stream.TYPING:
            await self._load_typing()
            return
        if not self.t.bus.has_source(stream):  # to-device rows are deleted once delivered
            await self.apply(stream, upto, [], None)
            return
        while self.t.bus.positions[stream] < upto:
            after = self.t.bus.positions[stream]
            rows = await self.t.bus.rows_since(stream, after, upto, CATCH_UP_PAGE)
            self.caught_up_rows += len(rows)
            if len(rows) < CATCH_UP_PAGE:
                await self.apply(stream, upto, rows, None)
                return
            await self.apply(stream, row_position(rows[-1]), rows, None)

    # -- applying one announcement --------------------------------------------------------------

    async def apply(self, stream: Stream, position: int, rows: Sequence[StreamRow], extra: Any) -> None:
        t = self.t
        if stream is Stream.EVENTS:
            await self._refresh_rooms(rows)
            t.persister.current_stream = max(t.persister.current_stream, position)
        generator = t.generators.get(stream)
        if generator is not None:
            generator.advance_to(position)
        if stream is Stream.TYPING:
            for row in rows:
                if isinstance(row, TypingRow):
                    t.typing.apply_replicated(row)
        t.bus.publish(stream, position, rows)
        if stream is Stream.PRESENCE:
            users = [r.user_id for r in rows if isinstance(r, PresenceStreamRow)]
            await t.presence.apply_replicated(position, users, extra or {})
        elif stream is Stream.DEVICE_LISTS:
            await t.wake_device_lists(position, rows)

    async def _refresh_rooms(self, rows: Sequence[StreamRow]) -> None:
        """The current-state snapshots of the rooms written to, before the consumers read them
        (the notifier wakes a room's joined members from its snapshot)."""
        rooms: dict[str, bool] = {}
        for row in rows:
            if not isinstance(row, EventsRow):
                continue
            if row.redacts is not None:
                self.t.events.invalidate(row.redacts)
            changed = row.is_state and (row.is_live or row.out_of_band)
            rooms[row.room_id] = rooms.get(row.room_id, False) or changed
        for room_id, state_changed in rooms.items():
            if state_changed or self.t.state.cached(room_id) is None:
                self.t.state.evict(room_id)
                await self.t.state.get(room_id)
            else:
                snapshot = self.t.state.cached(room_id)
                last = max(
                    r.stream_ordering for r in rows if isinstance(r, EventsRow) and r.room_id == room_id
                )
                if snapshot is not None and snapshot.last_stream < last:
                    # a message moves only the room's latest position (extremities are main's)
                    self.t.state.publish(replace(snapshot, last_stream=last))
