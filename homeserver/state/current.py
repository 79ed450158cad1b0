"""In-memory current state of rooms, loaded lazily and replaced (never mutated) after each commit.

A `RoomSnapshot` is immutable once published: the persister builds the next one copy-on-write and
publishes it only after its transaction commits, so readers never see uncommitted state. The
cache is owned by the state service (`state/service.py`), which adds state at a stream position
and state at an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.metrics.caches import register_cache
from homeserver.storage.stores.events import EventStore, RoomVersionLookup
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.state import StateStore

StateKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class RoomSnapshot:
    room_id: str
    version: RoomVersion
    state: Mapping[StateKey, Event]
    extremities: tuple[str, ...]
    depth: int
    # Stream ordering of the room's latest event.
    last_stream: int
    # user_id -> membership, derived from state once per snapshot.
    memberships: Mapping[str, str] = field(default_factory=dict)
    # The state group holding `state` (None: the empty state, or a room from before state groups
    # until its next event) and its number of delta hops down to a full group.
    state_group: int | None = None
    group_hops: int = 0
    # With several forward extremities: the state after each of them, as ids (what the next
    # resolution merges). None while the room is linear (the state after its one extremity is
    # `state`).
    forks: Mapping[str, Mapping[StateKey, str]] | None = None
    # Stream ordering of the room's latest state delta (None: not known). State at any position at
    # or after it is the current state, with no `state_deltas` to roll back: a woken sync of a
    # room where only messages happened reads nothing from the database.
    last_state_stream: int | None = None

    def state_unchanged_since(self, position: int) -> bool:
        """No state delta after stream `position` (the current state is the state there)."""
        return position >= self.last_stream or (
            self.last_state_stream is not None and position >= self.last_state_stream
        )

    def get(self, type: str, state_key: str = "") -> Event | None:
        return self.state.get((type, state_key))

    def content_of(self, type: str, state_key: str = "") -> Mapping[str, Any]:
        event = self.state.get((type, state_key))
        return event.content if event is not None else {}

    def membership(self, user_id: str) -> str | None:
        return self.memberships.get(user_id)

    def members_with(self, membership: str) -> list[str]:
        return [u for u, m in self.memberships.items() if m == membership]

    @property
    def creator(self) -> str | None:
        create = self.state.get((c.CREATE, ""))
        if create is None:
            return None
        if self.version.implicit_room_creator:
            return create.sender
        creator = create.content.get("creator")
        return creator if isinstance(creator, str) else create.sender


def memberships_from_state(state: Mapping[StateKey, Event]) -> dict[str, str]:
    return {
        key[1]: str(event.content.get("membership")) for key, event in state.items() if key[0] == c.MEMBER
    }


class CurrentStateCache:
    def __init__(
        self, rooms: RoomStore, events: EventStore, versions: RoomVersionLookup, groups: StateStore
    ) -> None:
        self.rooms = rooms
        self.events = events
        self.versions = versions
        self.groups = groups
        self._snapshots: dict[str, RoomSnapshot] = {}
        self._metric = register_cache("current_state_snapshot", self, lambda s: len(s._snapshots))

    def cached(self, room_id: str) -> RoomSnapshot | None:
        return self._snapshots.get(room_id)

    async def get(self, room_id: str) -> RoomSnapshot | None:
        snapshot = self._snapshots.get(room_id)
        if snapshot is None:
            self._metric.misses += 1
            snapshot = await self._load(room_id)
            if snapshot is not None:
                self._snapshots.setdefault(room_id, snapshot)
                snapshot = self._snapshots[room_id]
        else:
            self._metric.hits += 1
        return snapshot

    def publish(self, snapshot: RoomSnapshot) -> None:
        self._snapshots[snapshot.room_id] = snapshot

    def evict(self, room_id: str) -> None:
        self._snapshots.pop(room_id, None)

    async def _load(self, room_id: str) -> RoomSnapshot | None:
        version = await self.versions.get(room_id)
        if version is None:
            return None
        state_ids = await self.rooms.get_current_state_ids(room_id)
        found = await self.events.get_events(list(state_ids.values()))
        state = {key: found[eid].event for key, eid in state_ids.items() if eid in found}
        extremities = await self.rooms.get_forward_extremities(room_id)
        depth = await self.rooms.get_max_depth(room_id)
        last = await self.events.room_max_stream_ordering(room_id)
        last_state = await self.rooms.last_state_delta_ordering(room_id)
        group = await self.groups.get_current_group(room_id)
        hops = (await self.groups.get_group_hops(group) or 0) if group is not None else 0
        forks: dict[str, Mapping[StateKey, str]] | None = None
        if len(extremities) > 1:
            groups = await self.groups.get_event_groups(extremities)
            if all(e in groups for e in extremities):
                forks = {e: await self.groups.get_group_state(groups[e].after_group) for e in extremities}
        return RoomSnapshot(
            room_id,
            version,
            state,
            tuple(extremities),
            depth,
            int(last or 0),
            memberships_from_state(state),
            group,
            hops,
            forks,
            last_state,
        )
