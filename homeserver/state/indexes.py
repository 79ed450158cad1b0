"""In-memory indexes the sync hot path reads without touching the database.

- `RoomStreamIndex`: the stream ordering of each room's latest event (which rooms changed since a
  token is then a dict lookup per room).
- `MembershipIndex`: each user's rooms and membership, loaded per user on first use and kept
  current from the events stream.

Both are events-stream consumers on the stream bus, called synchronously after each commit and
before the notifier's position moves, so a reader that takes the position and reads an index
without awaiting in between sees a consistent pair. Rows of events clients never see (outliers,
rejected or soft-failed events) are skipped.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from homeserver.core.streams import EventsRow, StreamRow
from homeserver.metrics.caches import register_cache
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.rooms import RoomStore


class RoomStreamIndex:
    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    async def load(self, events: EventStore) -> None:
        self.last = await events.max_stream_ordering_per_room()

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if isinstance(row, EventsRow) and row.is_live:
                self.last[row.room_id] = row.stream_ordering


class MembershipIndex:
    MAX_USERS = 200_000

    def __init__(self, rooms: RoomStore, server_name: str) -> None:
        self.rooms = rooms
        self.server_suffix = ":" + server_name
        # user_id -> room_id -> (membership, stream ordering of the member event)
        self._users: dict[str, dict[str, tuple[str, int]]] = {}
        self.forgotten: dict[str, set[str]] = {}

    async def load_user(self, user_id: str) -> dict[str, tuple[str, int]]:
        rooms = self._users.get(user_id)
        if rooms is None:
            rows = await self.rooms.list_user_memberships(user_id)
            rooms = {m.room_id: (m.membership, m.stream_ordering) for m in rows}
            self.forgotten[user_id] = {m.room_id for m in rows if m.forgotten}
            if user_id not in self._users:
                if len(self._users) >= self.MAX_USERS:
                    self._users.pop(next(iter(self._users)))
                self._users[user_id] = rooms
            rooms = self._users[user_id]
        return rooms

    def rooms_of(self, user_id: str) -> dict[str, tuple[str, int]] | None:
        """Loaded users only (call load_user first)."""
        return self._users.get(user_id)

    def mark_forgotten(self, user_id: str, room_id: str) -> None:
        self.forgotten.setdefault(user_id, set()).add(room_id)

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if not isinstance(row, EventsRow) or row.membership is None or row.state_key is None:
                continue
            if not row.is_live and not row.out_of_band:
                continue
            rooms = self._users.get(row.state_key)
            if rooms is not None:
                rooms[row.room_id] = (row.membership, row.stream_ordering)
                forgotten = self.forgotten.get(row.state_key)
                if forgotten:
                    forgotten.discard(row.room_id)


def _ordering(entry: tuple[int, str]) -> int:
    return entry[0]


class RoomTailCache:
    """The newest events of each active room, so incremental syncs read no database.

    For each room it keeps (stream ordering, event id) of events committed since startup, at most
    `KEEP` of them, and `complete_from`: every event of the room with a higher ordering is in the
    list. A read for (after, upto] is served from memory when after >= complete_from.
    """

    KEEP = 200

    def __init__(self, room_streams: RoomStreamIndex) -> None:
        self.room_streams = room_streams
        self._rooms: dict[str, tuple[list[tuple[int, str]], list[int]]] = {}
        self._metric = register_cache("room_tails", self, lambda s: len(s._rooms))

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Subscribe BEFORE RoomStreamIndex.on_events (it reads the room's previous position)."""
        for row in rows:
            if not isinstance(row, EventsRow) or not row.is_live:
                continue
            room_id = row.room_id
            entry = self._rooms.get(room_id)
            if entry is None:
                entry = ([], [self.room_streams.last.get(room_id, 0)])
                self._rooms[room_id] = entry
            events, complete_from = entry
            events.append((row.stream_ordering, row.event_id))
            if len(events) > self.KEEP:
                dropped = events[: len(events) - self.KEEP]
                del events[: len(events) - self.KEEP]
                complete_from[0] = dropped[-1][0]
            # keep the room's position current for the next event of this batch
            self.room_streams.last[room_id] = row.stream_ordering

    def between(
        self, room_id: str, after: int, upto: int, limit: int, newest_first: bool
    ) -> list[tuple[str, int]] | None:
        """(event_id, ordering) with after < ordering <= upto, or None when not covered."""
        entry = self._rooms.get(room_id)
        if entry is None:
            # No event since startup: only answerable if nothing is newer than `after`.
            return [] if self.room_streams.last.get(room_id, 0) <= after else None
        events, complete_from = entry
        if after < complete_from[0]:
            self._metric.misses += 1
            return None
        self._metric.hits += 1
        # Ascending by ordering: bisect to the range instead of scanning the whole tail (a room
        # woken for 500 members is read 500 times per message).
        lo = bisect_right(events, after, key=_ordering)
        hi = bisect_right(events, upto, lo=lo, key=_ordering)
        if newest_first:
            return [(eid, pos) for pos, eid in reversed(events[max(lo, hi - limit) : hi])]
        return [(eid, pos) for pos, eid in events[lo : min(hi, lo + limit)]]
