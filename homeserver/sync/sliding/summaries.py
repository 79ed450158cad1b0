"""Per-room summary rows sliding sync sorts and filters a user's rooms with.

For every room: its bump stamp (newest event of a "bump" type), room type, whether it is
encrypted, its name and avatar. Rows are loaded for all of a user's unknown rooms at once (three
bulk queries for up to 400 rooms each: the content of a few current state events, bump stamps)
and then kept current from the events stream, so a user in 1,000 rooms gets a sorted, filtered
list without reading each room's state. Bounded: least recently used rooms are dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core.streams import EventsRow, StreamRow
from homeserver.metrics.caches import register_cache
from homeserver.storage.stores.sliding_sync import SlidingSyncStore

# As Synapse (SLIDING_SYNC_DEFAULT_BUMP_EVENT_TYPES): events that move a room up the list.
BUMP_EVENT_TYPES = frozenset(
    {
        "m.room.create",
        "m.room.message",
        "m.room.encrypted",
        "m.sticker",
        "m.call.invite",
        "m.poll.start",
        "m.beacon_info",
    }
)
_SUMMARY_STATE = frozenset({"m.room.create", "m.room.encryption", "m.room.name", "m.room.avatar"})


@dataclass(slots=True)
class RoomSummary:
    bump_stamp: int = 0
    room_type: str | None = None
    encrypted: bool = False
    name: str | None = None
    avatar: str | None = None


class RoomSummaryIndex:
    MAX_ROOMS = 200_000

    def __init__(self, store: SlidingSyncStore) -> None:
        self.store = store
        self._rooms: OrderedDict[str, RoomSummary] = OrderedDict()
        self._metric = register_cache("sliding_sync_room_summaries", self, lambda s: len(s._rooms))

    async def get_many(self, room_ids: Iterable[str]) -> dict[str, RoomSummary]:
        wanted = list(room_ids)
        missing = [r for r in wanted if r not in self._rooms]
        self._metric.hits += len(wanted) - len(missing)
        self._metric.misses += len(missing)
        if missing:
            await self._load(missing)
        out = {}
        for room_id in wanted:
            summary = self._rooms.get(room_id)
            if summary is not None:
                out[room_id] = summary
        return out

    async def _load(self, room_ids: Sequence[str]) -> None:
        rows = await self.store.current_state_contents(room_ids, _SUMMARY_STATE)
        bumps = await self.store.bump_stamps(room_ids, BUMP_EVENT_TYPES)
        loaded = {room_id: RoomSummary(bump_stamp=bumps.get(room_id, 0)) for room_id in room_ids}
        for room_id, ev_type, content in rows:
            _apply_state(loaded[room_id], ev_type, content)
        for room_id, summary in loaded.items():
            # An event committed while loading already updated a row: keep the newer one.
            self._rooms.setdefault(room_id, summary)
        while len(self._rooms) > self.MAX_ROOMS:
            self._rooms.popitem(last=False)

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        for row in rows:
            if not isinstance(row, EventsRow) or not row.is_live:
                continue
            summary = self._rooms.get(row.room_id)
            if summary is None:
                continue
            if row.type in BUMP_EVENT_TYPES:
                summary.bump_stamp = max(summary.bump_stamp, row.stream_ordering)
            if row.state_key == "" and row.type in _SUMMARY_STATE:
                # The content is not in the stream row: reload the room on next use.
                del self._rooms[row.room_id]


def _apply_state(summary: RoomSummary, ev_type: str, content: Mapping[str, Any]) -> None:
    if ev_type == "m.room.create":
        room_type = content.get("type")
        summary.room_type = room_type if isinstance(room_type, str) else None
    elif ev_type == "m.room.encryption":
        summary.encrypted = True
    elif ev_type == "m.room.name":
        name = content.get("name")
        summary.name = name if isinstance(name, str) and name else None
    elif ev_type == "m.room.avatar":
        url = content.get("url")
        summary.avatar = url if isinstance(url, str) and url else None
