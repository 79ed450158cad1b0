"""What another server may read of a room: the access checks of the federation read endpoints.

- The room must exist here (else 404 `M_NOT_FOUND`) and its `m.room.server_acl` must allow the
  origin (else 403 `M_FORBIDDEN`, `acl.py`).
- For events and state (/event, /event_auth, /state, /state_ids, /backfill, /get_missing_events,
  /timestamp_to_event) the origin must have a user joined to the room now, or the room must be
  world-readable; else 403 `M_FORBIDDEN` ("Host not in room.", as Synapse).
- Events go through `filter_events` (Synapse's `filter_events_for_server`): with the history
  visibility in the state at the event `joined` (`invited`), the event is visible only when one of
  the origin's users was joined (joined or invited) there; `shared` and `world_readable` events
  are visible to any server that passed the room check. Events of erased senders are never
  shown in full. An invisible event is served redacted (its hashes and signatures still verify,
  so the DAG stays walkable) or left out, as the caller asks. Outliers have no known state and
  count as `shared`, as in Synapse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.federation.acl import check_server_acl, server_allowed
from homeserver.services.visibility import VisibilityService
from homeserver.state.current import RoomSnapshot, StateKey
from homeserver.state.service import StateService
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.state import StateStore

SERVER_ACL = "m.room.server_acl"
HV_KEY: StateKey = (c.HISTORY_VISIBILITY, "")
WORLD_READABLE = "world_readable"
RESTRICTED_HV = ("joined", "invited")


def acl_content(snapshot: RoomSnapshot) -> Mapping[str, object] | None:
    event = snapshot.get(SERVER_ACL)
    return event.content if event is not None else None


def host_joined(snapshot: RoomSnapshot, server_name: str) -> bool:
    """Whether a user of `server_name` is joined to the room in its current state."""
    return any(
        membership == c.JOIN and ids.server_of(user_id) == server_name
        for user_id, membership in snapshot.memberships.items()
    )


def is_world_readable(snapshot: RoomSnapshot) -> bool:
    return snapshot.content_of(c.HISTORY_VISIBILITY).get("history_visibility") == WORLD_READABLE


class ServerAccess:
    def __init__(
        self, state: StateService, events: EventStore, groups: StateStore, visibility: VisibilityService
    ) -> None:
        self.state = state
        self.events = events
        self.groups = groups
        # Its `erased_senders` hook (services/erasure.py) is read at call time.
        self.visibility = visibility

    # -- rooms -----------------------------------------------------------------------------------

    async def room(self, origin: str, room_id: str) -> RoomSnapshot:
        """The room, once the origin passes its ACL (no membership asked)."""
        if not ids.is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room id: {room_id!r}")
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise not_found(f"Unknown room {room_id}")
        check_server_acl(origin, acl_content(snapshot))
        return snapshot

    async def readable_room(self, origin: str, room_id: str) -> RoomSnapshot:
        """The room, when the origin may read its events and state."""
        snapshot = await self.room(origin, room_id)
        if not host_joined(snapshot, origin) and not is_world_readable(snapshot):
            raise forbidden("Host not in room.")
        return snapshot

    @staticmethod
    def acl_allows(snapshot: RoomSnapshot, origin: str) -> bool:
        return server_allowed(origin, acl_content(snapshot))

    # -- events ----------------------------------------------------------------------------------

    async def filter_events(
        self, origin: str, events: Sequence[StoredEvent], *, redact: bool = True
    ) -> list[Event]:
        """The events as `origin` may see them, in the given order: visible ones in full (or in
        their redacted form when redacted here), the others redacted (`redact`) or left out."""
        if not events:
            return []
        visible = await self.visible(origin, events)
        result = []
        for stored in events:
            event = stored.event.redacted() if stored.redacted_by is not None else stored.event
            if stored.event_id in visible:
                result.append(event)
            elif redact:
                result.append(event if stored.redacted_by is not None else event.redacted())
        return result

    async def visible(self, origin: str, events: Sequence[StoredEvent]) -> set[str]:
        """The ids of the events `origin` may see (history visibility, erased senders)."""
        hook = self.visibility.erased_senders
        erased = await hook({s.event.sender for s in events}) if hook is not None else set()
        restricted = await self._restricted_at(origin, [s for s in events if not s.outlier])
        return {
            s.event_id for s in events if restricted.get(s.event_id, True) and s.event.sender not in erased
        }

    async def _restricted_at(self, origin: str, events: Sequence[StoredEvent]) -> dict[str, bool]:
        """For events whose history visibility (in the state after them) is `joined` or `invited`:
        whether one of the origin's users was joined (or, for `invited`, invited) there. Events
        with a more open visibility are not in the result."""
        states = await self._states_after([s.event_id for s in events], origin)
        wanted: set[str] = set()
        for state in states.values():
            hv_id = state.get(HV_KEY)
            if hv_id is not None:
                wanted.add(hv_id)
        loaded = await self.events.get_events(sorted(wanted))
        result: dict[str, bool] = {}
        restricted: dict[str, tuple[str, Mapping[StateKey, str]]] = {}
        for event_id, state in states.items():
            hv_id = state.get(HV_KEY)
            hv_event = loaded.get(hv_id) if hv_id is not None else None
            hv = hv_event.event.content.get("history_visibility") if hv_event is not None else None
            if hv in RESTRICTED_HV:
                restricted[event_id] = (str(hv), state)
        member_ids = {
            member_id
            for _, state in restricted.values()
            for (etype, key), member_id in state.items()
            if etype == c.MEMBER and ids.server_of(key) == origin
        }
        members = await self.events.get_events(sorted(member_ids))
        for event_id, (hv, state) in restricted.items():
            allowed = {c.JOIN, c.INVITE} if hv == "invited" else {c.JOIN}
            result[event_id] = any(
                (stored := members.get(member_id)) is not None and stored.event.membership in allowed
                for (etype, key), member_id in state.items()
                if etype == c.MEMBER and ids.server_of(key) == origin
            )
        return result

    async def _states_after(self, event_ids: Sequence[str], origin: str) -> dict[str, Mapping[StateKey, str]]:
        """The history visibility and the origin's memberships in the state after each event,
        reading each distinct state group once (and only those keys of it)."""
        rows = await self.groups.get_event_groups(list(event_ids))
        by_group: dict[int | None, dict[StateKey, str]] = {}
        states: dict[str, Mapping[StateKey, str]] = {}
        for event_id in event_ids:
            row = rows.get(event_id)
            if row is None:
                # Stored before state groups existed: the state at its stream position.
                legacy = await self.state.state_ids_at_event(event_id)
                if legacy is not None:
                    states[event_id] = legacy
                continue
            group = row.after_group
            if group not in by_group:
                by_group[group] = await self.groups.get_group_state_filtered(
                    group, (c.HISTORY_VISIBILITY,), member_server=origin
                )
            states[event_id] = by_group[group]
        return states
