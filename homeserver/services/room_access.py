"""Who may read a room, and up to where: members read everything (subject to history visibility),
users who left read up to their leave, anyone reads world_readable rooms."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.core import ids
from homeserver.core.errors import forbidden, not_found
from homeserver.events import constants as c
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.storage.stores.rooms import RoomStore


@dataclass(frozen=True, slots=True)
class ReadAccess:
    snapshot: RoomSnapshot
    membership: str | None
    # Highest stream ordering the user may read (their leave event, or unbounded).
    upto: int | None


class RoomAccess:
    def __init__(self, state: CurrentStateCache, rooms: RoomStore) -> None:
        self.state = state
        self.rooms = rooms

    async def snapshot(self, room_id: str) -> RoomSnapshot:
        ids.check_room_id(room_id)
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise not_found("Unknown room")
        return snapshot

    async def check_can_read(self, user_id: str, room_id: str) -> ReadAccess:
        # Unknown rooms answer like rooms the user is not in: 403, as the spec documents for reads
        # (and so room existence does not leak).
        ids.check_room_id(room_id)
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise forbidden(f"User {user_id} not in room {room_id}")
        membership = snapshot.membership(user_id)
        if membership == c.JOIN:
            return ReadAccess(snapshot, membership, None)
        hv = snapshot.content_of(c.HISTORY_VISIBILITY).get("history_visibility")
        if hv == "world_readable":
            return ReadAccess(snapshot, membership, None)
        if membership in (c.LEAVE, c.BAN):
            row = await self.rooms.get_membership(room_id, user_id)
            if row is not None and not row.forgotten:
                return ReadAccess(snapshot, membership, row.stream_ordering)
        raise forbidden(f"User {user_id} not in room {room_id}")
