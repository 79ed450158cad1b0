"""History visibility: which events a user may see (client-server API, "History visibility").

For an event, with the history visibility and the user's membership at that event:
world_readable → visible; joined → visible; shared → visible if the user is, or became, joined
after the event; invited → visible if the user was invited; otherwise hidden.

Two compliance rules come on top (services/retention.py, services/erasure.py), as in Synapse's
`filter_events_for_client`: non-state events older than the room's retention cutoff are hidden;
events of erased senders are served pruned unless the user was joined when they were sent.

Backfilled history (negative stream orderings, older than every live event) is not covered by the
live histories of visibility and membership: for those events both come from the state before the
event (`state_before_event`, the recorded state groups); without it they are hidden.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from homeserver.core.streams import EventsRow, StreamRow
from homeserver.events import constants as c
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.rooms import RoomStore

History = list[tuple[int, str | None]]  # (stream ordering, value) oldest first
# event id -> the state before it as ids, None when unknown
StateBefore = Callable[[str], Awaitable[Mapping[tuple[str, str], str] | None]]


class VisibilityService:
    def __init__(self, rooms: RoomStore, events: EventStore) -> None:
        self.rooms = rooms
        self.events = events
        # (room_id, type, state_key) -> value history; invalidated by the persister on state changes
        self._histories: dict[tuple[str, str, str], History] = {}
        self._epoch = 0  # bumped by every invalidation: a batch load that raced one is not kept
        # Optional (services/ignore.py): the users a user ignores; their non-state events are hidden.
        self.ignored_users: Callable[[str], Awaitable[frozenset[str]]] | None = None
        # Optional (services/retention.py): the oldest origin_server_ts a room's readers may see.
        self.retention_cutoff: Callable[[str], Awaitable[int | None]] | None = None
        # Optional (services/erasure.py): which of these senders are erased.
        self.erased_senders: Callable[[Iterable[str]], Awaitable[set[str]]] | None = None
        # Optional (state service): the state before an event, for backfilled history.
        self.state_before_event: StateBefore | None = None

    def invalidate(self, room_id: str, type: str, state_key: str) -> None:
        self._histories.pop((room_id, type, state_key), None)
        self._epoch += 1

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
            history = self._histories[key] = self._to_history(raw, found, field)
        return history

    @staticmethod
    def _to_history(
        raw: list[tuple[int, str | None]], found: Mapping[str, StoredEvent], field: str
    ) -> History:
        history: History = []
        for pos, event_id in raw:
            stored = found.get(event_id) if event_id else None
            value = stored.event.content.get(field) if stored is not None else None
            history.append((pos, value if isinstance(value, str) else None))
        return history

    async def prefetch(self, user_id: str, room_ids: Sequence[str]) -> None:
        """Load the histories `filter_events` needs for these rooms (the rooms' history visibility
        and the user's membership) with a couple of queries instead of two per room: an initial
        sync filters the timeline of every room of the user."""
        wanted = (
            (c.HISTORY_VISIBILITY, "", "history_visibility"),
            (c.MEMBER, user_id, "membership"),
        )
        missing = {
            (type, state_key, field): [r for r in room_ids if (r, type, state_key) not in self._histories]
            for type, state_key, field in wanted
        }
        if sum(len(rooms) for rooms in missing.values()) < 2:
            return
        epoch = self._epoch
        raw = {
            spec: await self.rooms.state_key_histories(rooms, spec[0], spec[1])
            for spec, rooms in missing.items()
            if rooms
        }
        ids = [e for per_room in raw.values() for history in per_room.values() for _, e in history]
        found = await self.events.get_events([e for e in ids if e is not None])
        if self._epoch != epoch:
            return  # a state change committed meanwhile: let filter_events load what it needs
        for (type, state_key, field), per_room in raw.items():
            for room_id, history in per_room.items():
                self._histories[(room_id, type, state_key)] = self._to_history(history, found, field)

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

        cutoff = await self.retention_cutoff(room_id) if self.retention_cutoff is not None else None
        erased = (
            await self.erased_senders({s.event.sender for s in events})
            if self.erased_senders is not None
            else set()
        )

        visible = []
        for stored in events:
            pos = stored.stream_ordering
            event = stored.event
            if cutoff is not None and event.state_key is None and event.origin_server_ts < cutoff:
                continue  # expired under the room's retention policy (MSC1763: never state)
            if event.type == c.MEMBER and event.state_key == user_id:
                visible.append(stored)  # a user always sees their own membership changes
                continue
            if pos < 0:
                at = await self._at_backfilled(user_id, stored)
                if at is None:
                    continue
                hv_at, membership = at
                hv = hv_at or "shared"
            else:
                hv = self._value_before(hv_history, hv_positions, pos) or "shared"
                membership = self._value_before(member_history, member_positions, pos)
            sender_erased = event.sender in erased
            if hv == "world_readable" and not sender_erased:
                visible.append(stored)
                continue
            joined = membership == c.JOIN
            if not (
                joined
                or hv == "world_readable"
                or (hv == "shared" and last_join is not None and last_join > pos)
                or (hv == "invited" and membership == c.INVITE)
            ):
                continue
            if sender_erased and not joined:
                # Synapse: readers who were not joined at the time only get the redacted form.
                stored = replace(stored, event=event.redacted())
            visible.append(stored)
        if self.ignored_users is not None and visible:
            ignored = await self.ignored_users(user_id)
            if ignored:
                visible = [
                    s for s in visible if s.event.state_key is not None or s.event.sender not in ignored
                ]
        return visible

    async def _at_backfilled(self, user_id: str, stored: StoredEvent) -> tuple[str | None, str | None] | None:
        """(history visibility, the user's membership) before a backfilled event; None when its
        state is unknown (then it is hidden)."""
        if self.state_before_event is None:
            return None
        state = await self.state_before_event(stored.event_id)
        if state is None:
            return None
        hv_id = state.get((c.HISTORY_VISIBILITY, ""))
        member_id = state.get((c.MEMBER, user_id))
        found = await self.events.get_events([e for e in (hv_id, member_id) if e is not None])
        hv = found[hv_id].event.content.get("history_visibility") if hv_id in found else None
        membership = found[member_id].event.content.get("membership") if member_id in found else None
        return (
            hv if isinstance(hv, str) else None,
            membership if isinstance(membership, str) else None,
        )

    async def can_see_event(self, user_id: str, stored: StoredEvent) -> bool:
        return bool(await self.filter_events(user_id, stored.event.room_id, [stored]))

    async def current_membership(self, room_id: str, user_id: str) -> str | None:
        history = await self._history(room_id, c.MEMBER, user_id, "membership")
        return history[-1][1] if history else None
