"""History visibility: which events a user may see (client-server API, "History visibility").

For an event, with the history visibility and the user's membership at that event:
world_readable → visible; joined → visible; shared → visible if the user is, or became, joined
after the event; invited → visible if the user was invited; otherwise hidden.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Awaitable, Callable, Sequence

from homeserver.core.streams import EventsRow, StreamRow
from homeserver.events import constants as c
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.rooms import RoomStore

History = list[tuple[int, str | None]]  # (stream ordering, value) oldest first


class VisibilityService:
    def __init__(self, rooms: RoomStore, events: EventStore) -> None:
        self.rooms = rooms
        self.events = events
        # (room_id, type, state_key) -> value history; invalidated by the persister on state changes
        self._histories: dict[tuple[str, str, str], History] = {}
        # Optional (services/ignore.py): the users a user ignores; their non-state events are hidden.
        self.ignored_users: Callable[[str], Awaitable[frozenset[str]]] | None = None

    def invalidate(self, room_id: str, type: str, state_key: str) -> None:
        self._histories.pop((room_id, type, state_key), None)

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        """Events stream consumer: a state change makes that key's cached history stale."""
        for row in rows:
            if isinstance(row, EventsRow) and row.state_key is not None:
                self.invalidate(row.room_id, row.type, row.state_key)

    async def _history(self, room_id: str, type: str, state_key: str, field: str) -> History:
        key = (room_id, type, state_key)
        history = self._histories.get(key)
        if history is None:
            raw = await self.rooms.state_key_history(room_id, type, state_key)
            found = await self.events.get_events([e for _, e in raw if e is not None])
            history = []
            for pos, event_id in raw:
                stored = found.get(event_id) if event_id else None
                value = stored.event.content.get(field) if stored is not None else None
                history.append((pos, value if isinstance(value, str) else None))
            self._histories[key] = history
        return history

    @staticmethod
    def _value_before(history: History, positions: list[int], pos: int) -> str | None:
        index = bisect_right(positions, pos - 1)
        return history[index - 1][1] if index else None

    async def filter_events(
        self, user_id: str, room_id: str, events: Sequence[StoredEvent]
    ) -> list[StoredEvent]:
        if not events:
            return []
        hv_history = await self._history(room_id, c.HISTORY_VISIBILITY, "", "history_visibility")
        member_history = await self._history(room_id, c.MEMBER, user_id, "membership")
        hv_positions = [p for p, _ in hv_history]
        member_positions = [p for p, _ in member_history]
        join_positions = [p for p, m in member_history if m == c.JOIN]
        last_join = join_positions[-1] if join_positions else None

        visible = []
        for stored in events:
            pos = stored.stream_ordering
            event = stored.event
            if event.type == c.MEMBER and event.state_key == user_id:
                visible.append(stored)  # a user always sees their own membership changes
                continue
            hv = self._value_before(hv_history, hv_positions, pos) or "shared"
            if hv == "world_readable":
                visible.append(stored)
                continue
            membership = self._value_before(member_history, member_positions, pos)
            if membership == c.JOIN:
                visible.append(stored)
            elif hv == "shared" and last_join is not None and last_join > pos:
                visible.append(stored)
            elif hv == "invited" and membership == c.INVITE:
                visible.append(stored)
        if self.ignored_users is not None and visible:
            ignored = await self.ignored_users(user_id)
            if ignored:
                visible = [
                    s for s in visible if s.event.state_key is not None or s.event.sender not in ignored
                ]
        return visible

    async def can_see_event(self, user_id: str, stored: StoredEvent) -> bool:
        return bool(await self.filter_events(user_id, stored.event.room_id, [stored]))

    async def current_membership(self, room_id: str, user_id: str) -> str | None:
        history = await self._history(room_id, c.MEMBER, user_id, "membership")
        return history[-1][1] if history else None
