"""The state service: the current state of rooms, the state at a stream position, the state at an
event.

- Current state: the in-memory `RoomSnapshot` cache (`CurrentStateCache`), loaded lazily,
  replaced by the persister after each commit.
- At a stream position (sync, /messages, /context, search): current state with the later changes
  of `state_deltas` rolled back — cheap for recent positions, where readers usually are.
- At an event (federation: /state, /state_ids, auth of received events; state resolution): the
  state groups the persister recorded for each event (`storage/stores/state.py`). Events stored
  before state groups existed fall back to the stream-position answer.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.events import constants as c
from homeserver.state.current import CurrentStateCache, RoomSnapshot, StateKey
from homeserver.storage.stores.events import EventStore, RoomVersionLookup
from homeserver.storage.stores.rooms import RoomStore, StateDelta
from homeserver.storage.stores.state import StateStore


class StateService(CurrentStateCache):
    # Rooms whose prefetched deltas are kept (see prefetch_deltas).
    PREFETCHED_ROOMS = 10_000

    def __init__(
        self, rooms: RoomStore, events: EventStore, versions: RoomVersionLookup, groups: StateStore
    ) -> None:
        super().__init__(rooms, events, versions, groups)
        # room -> (after, upto, every delta with after < position <= upto, oldest first)
        self._prefetched: dict[str, tuple[int, int, list[StateDelta]]] = {}

    async def prefetch_deltas(self, after: Mapping[str, int], upto: int) -> None:
        """Load the state deltas after a position of many rooms at once (an initial sync rolls
        every room's state back to its timeline start: one query per room otherwise). `upto` must
        be a committed stream position: the deltas up to it never change, so they answer
        `state_ids_at` for any snapshot no newer than it."""
        if len(after) < 2:
            return
        loaded = await self.rooms.state_deltas_after_many(after)
        if len(self._prefetched) + len(loaded) > self.PREFETCHED_ROOMS:
            self._prefetched.clear()
        for room_id, deltas in loaded.items():
            self._prefetched[room_id] = (
                after[room_id],
                upto,
                [d for d in deltas if d.stream_ordering <= upto],
            )

    async def _deltas_after(self, snapshot: RoomSnapshot, position: int) -> list[StateDelta]:
        entry = self._prefetched.get(snapshot.room_id)
        if entry is not None:
            after, upto, deltas = entry
            if after <= position and snapshot.last_stream <= upto:
                return [d for d in deltas if d.stream_ordering > position]
        return await self.rooms.state_deltas_after(snapshot.room_id, position)

    async def state_ids_at(self, snapshot: RoomSnapshot, position: int) -> dict[StateKey, str]:
        """State ids after stream `position`: current state with later changes rolled back."""
        state = {key: event.event_id for key, event in snapshot.state.items()}
        if snapshot.state_unchanged_since(position):
            return state
        seen = set()
        for delta in await self._deltas_after(snapshot, position):
            key = (delta.type, delta.state_key)
            if key in seen:
                continue
            seen.add(key)
            if delta.prev_event_id is None:
                state.pop(key, None)
            else:
                state[key] = delta.prev_event_id
        return state

    async def member_ids_at(
        self, snapshot: RoomSnapshot, position: int, user_ids: set[str]
    ) -> dict[StateKey, str]:
        """The member event ids of `user_ids` after stream `position` (those with one): what
        `state_ids_at` gives for these keys, without copying the whole (large) room state."""
        state: dict[StateKey, str] = {}
        for user_id in user_ids:
            event = snapshot.state.get((c.MEMBER, user_id))
            if event is not None:
                state[(c.MEMBER, user_id)] = event.event_id
        if snapshot.state_unchanged_since(position):
            return state
        seen = set()
        for delta in await self._deltas_after(snapshot, position):
            key = (delta.type, delta.state_key)
            if key in seen or delta.type != c.MEMBER or delta.state_key not in user_ids:
                continue
            seen.add(key)
            if delta.prev_event_id is None:
                state.pop(key, None)
            else:
                state[key] = delta.prev_event_id
        return state

    async def state_ids_at_event(self, event_id: str, *, before: bool = False) -> dict[StateKey, str] | None:
        """The room state after the event (or before it), None for an unknown event or an outlier."""
        rows = await self.groups.get_event_groups([event_id])
        row = rows.get(event_id)
        if row is not None:
            return await self.groups.get_group_state(row.before_group if before else row.after_group)
        stored = await self.events.get_event(event_id)
        if stored is None or stored.outlier:
            return None
        # Stored before state groups existed: the state at its stream position.
        snapshot = await self.get(stored.event.room_id)
        if snapshot is None:
            return None
        return await self.state_ids_at(
            snapshot, stored.stream_ordering - 1 if before else stored.stream_ordering
        )
