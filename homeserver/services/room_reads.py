"""Read-only room queries of the client API: joined rooms, members, and state (one event or all),
each as the requester may see it (up to their leave event when they left)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.core.errors import not_found
from homeserver.core.tokens import PaginationToken
from homeserver.events import constants as c
from homeserver.http.requester import Requester
from homeserver.services.room_access import ReadAccess, RoomAccess
from homeserver.services.serialize import EventSerializer
from homeserver.state.current import RoomSnapshot
from homeserver.state.indexes import MembershipIndex
from homeserver.storage.stores.events import EventStore

StateIdsAt = Callable[[RoomSnapshot, int], Awaitable[dict[tuple[str, str], str]]]


class RoomReadService:
    def __init__(
        self,
        access: RoomAccess,
        memberships: MembershipIndex,
        events: EventStore,
        serializer: EventSerializer,
        *,
        state_ids_at: StateIdsAt,
    ) -> None:
        self.access = access
        self.memberships = memberships
        self.events = events
        self.serializer = serializer
        self.state_ids_at = state_ids_at

    async def joined_rooms(self, requester: Requester) -> list[str]:
        rooms = await self.memberships.load_user(requester.user_id)
        return sorted(r for r, (m, _) in rooms.items() if m == c.JOIN)

    async def _state_ids(self, access: ReadAccess, upto: int | None) -> dict[tuple[str, str], str]:
        if upto is None:
            return {k: e.event_id for k, e in access.snapshot.state.items()}
        return await self.state_ids_at(access.snapshot, upto)

    async def members(
        self,
        requester: Requester,
        room_id: str,
        *,
        at: str | None = None,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> list[dict[str, Any]]:
        """getMembersByRoom: member events at `at` (a pagination token) or now, filtered."""
        access = await self.access.check_can_read(requester.user_id, room_id)
        upto = access.upto
        if at:
            position = PaginationToken.parse(at).stream
            upto = position if upto is None else min(upto, position)
        state_ids = {k: v for k, v in (await self._state_ids(access, upto)).items() if k[0] == c.MEMBER}
        stored = await self.events.get_events_ordered(sorted(state_ids.values()))
        chosen = []
        for s in stored:
            value = s.event.content.get("membership")
            if membership and value != membership:
                continue
            if not_membership and value == not_membership:
                continue
            chosen.append(s)
        return await self.serializer.serialize(chosen)

    async def joined_members(self, requester: Requester, room_id: str) -> dict[str, Any]:
        """getJoinedMembersByRoom: joined users with their room display names and avatars."""
        access = await self.access.check_can_read(requester.user_id, room_id)
        joined: dict[str, Any] = {}
        for (etype, user_id), event in access.snapshot.state.items():
            if etype == c.MEMBER and event.content.get("membership") == c.JOIN:
                entry: dict[str, Any] = {}
                if isinstance(event.content.get("displayname"), str):
                    entry["display_name"] = event.content["displayname"]
                if isinstance(event.content.get("avatar_url"), str):
                    entry["avatar_url"] = event.content["avatar_url"]
                joined[user_id] = entry
        return joined

    async def state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str, *, as_event: bool
    ) -> dict[str, Any]:
        """One state event's content (or the whole event with `format=event`)."""
        access = await self.access.check_can_read(requester.user_id, room_id)
        if access.upto is None:
            event = access.snapshot.get(event_type, state_key)
            event_id = event.event_id if event is not None else None
        else:
            event_id = (await self.state_ids_at(access.snapshot, access.upto)).get((event_type, state_key))
        stored = await self.events.get_event(event_id) if event_id is not None else None
        if stored is None:
            raise not_found("Event not found")
        serialized = await self.serializer.serialize_one(stored)
        return serialized if as_event else serialized["content"]

    async def state(self, requester: Requester, room_id: str) -> list[dict[str, Any]]:
        """getRoomState: every state event the requester may see."""
        access = await self.access.check_can_read(requester.user_id, room_id)
        event_ids = list((await self._state_ids(access, access.upto)).values())
        stored = await self.events.get_events_ordered(event_ids)
        return await self.serializer.serialize(stored)
