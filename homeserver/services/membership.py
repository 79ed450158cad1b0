"""Membership changes: join, invite, leave, kick, ban, unban, knock, forget.

Pre-checks here give clients the errors Synapse gives; the auth rules, run by the persister against
the room state at that instant, remain the authority.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.persist.persister import EventDraft, EventPersister, PersistedEvent
from homeserver.services.room_presets import STRIPPED_STATE_TYPES
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.users import UserStore


def stripped_state(snapshot: RoomSnapshot, extra: list[Any] | None = None) -> list[dict[str, Any]]:
    result = []
    for etype in STRIPPED_STATE_TYPES:
        event = snapshot.get(etype)
        if event is not None:
            result.append(
                {
                    "type": event.type,
                    "state_key": event.state_key,
                    "content": event.content,
                    "sender": event.sender,
                }
            )
    for event in extra or []:
        result.append(
            {
                "type": event.type,
                "state_key": event.state_key,
                "content": event.content,
                "sender": event.sender,
            }
        )
    return result


class MembershipService:
    def __init__(
        self,
        persister: EventPersister,
        state: CurrentStateCache,
        rooms: RoomStore,
        users: UserStore,
        *,
        server_name: str,
    ) -> None:
        self.persister = persister
        self.state = state
        self.rooms = rooms
        self.users = users
        self.server_name = server_name
        # Called with (user_id, room_id) once a room is forgotten (the membership index hides it).
        self.forgotten_hooks: list[Callable[[str, str], None]] = []

    async def member_content(
        self, user_id: str, membership: str, reason: str | None = None
    ) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        if membership in (c.JOIN, c.INVITE, c.KNOCK):
            profile = await self.users.get_profile(user_id)
            if profile is not None:
                if profile.displayname is not None:
                    content["displayname"] = profile.displayname
                if profile.avatar_url is not None:
                    content["avatar_url"] = profile.avatar_url
        if reason is not None:
            content["reason"] = reason
        return content

    async def _room(self, room_id: str) -> RoomSnapshot:
        ids.check_room_id(room_id)
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise not_found("Unknown room")
        return snapshot

    async def _send(self, draft: EventDraft) -> PersistedEvent:
        return await self.persister.send_one(draft)

    # -- operations ------------------------------------------------------------------------------

    async def join(
        self, user_id: str, room_id: str, reason: str | None = None, content: dict[str, Any] | None = None
    ) -> PersistedEvent:
        """Join (or re-join). `content` replaces the profile-derived member content, e.g. a
        per-room display name set through PUT /state/m.room.member/{userId}."""
        snapshot = await self._room(room_id)
        if snapshot.membership(user_id) == c.BAN:
            raise forbidden("You are banned from this room")
        if content is not None:
            content = {**content, "membership": c.JOIN}
        else:
            content = await self.member_content(user_id, c.JOIN, reason)
        if snapshot.membership(user_id) == c.JOIN:
            current = snapshot.get(c.MEMBER, user_id)
            if current is not None and dict(current.content) == content:
                # Re-joining with the same profile is a no-op, as in Synapse.
                return PersistedEvent(current, snapshot.last_stream, snapshot)
        return await self._send(EventDraft(room_id, c.MEMBER, user_id, content, user_id))

    async def invite(
        self, sender: str, room_id: str, target: str, *, reason: str | None = None, is_direct: bool = False
    ) -> PersistedEvent:
        ids.check_user_id(target)
        snapshot = await self._room(room_id)
        if snapshot.membership(sender) != c.JOIN:
            raise forbidden("You are not in this room")
        current = snapshot.membership(target)
        if current == c.JOIN:
            raise forbidden(f"{target} is already in the room")
        if current == c.BAN:
            raise forbidden(f"{target} is banned from the room")
        if ids.server_of(target) == self.server_name and await self.users.get_user(target) is None:
            raise not_found(f"Unknown user {target}")
        content = await self.member_content(target, c.INVITE, reason)
        if is_direct:
            content["is_direct"] = True
        sender_member = snapshot.get(c.MEMBER, sender)
        unsigned = {"invite_room_state": stripped_state(snapshot, [sender_member] if sender_member else [])}
        return await self._send(
            EventDraft(room_id, c.MEMBER, sender, content, target, unsigned_extra=unsigned)
        )

    async def leave(self, user_id: str, room_id: str, reason: str | None = None) -> PersistedEvent:
        snapshot = await self._room(room_id)
        current = snapshot.membership(user_id)
        if current in (None, c.LEAVE):
            raise forbidden("You are not in this room")
        if current == c.BAN:
            raise forbidden("You are banned from this room")
        content = await self.member_content(user_id, c.LEAVE, reason)
        return await self._send(EventDraft(room_id, c.MEMBER, user_id, content, user_id))

    async def kick(self, sender: str, room_id: str, target: str, reason: str | None = None) -> PersistedEvent:
        ids.check_user_id(target)
        snapshot = await self._room(room_id)
        if snapshot.membership(target) not in (c.JOIN, c.INVITE, c.KNOCK):
            raise forbidden(f"{target} is not in the room")
        content = await self.member_content(target, c.LEAVE, reason)
        return await self._send(EventDraft(room_id, c.MEMBER, sender, content, target))

    async def ban(self, sender: str, room_id: str, target: str, reason: str | None = None) -> PersistedEvent:
        ids.check_user_id(target)
        await self._room(room_id)
        content = await self.member_content(target, c.BAN, reason)
        return await self._send(EventDraft(room_id, c.MEMBER, sender, content, target))

    async def unban(
        self, sender: str, room_id: str, target: str, reason: str | None = None
    ) -> PersistedEvent:
        ids.check_user_id(target)
        snapshot = await self._room(room_id)
        if snapshot.membership(target) != c.BAN:
            raise forbidden(f"{target} is not banned")
        content = await self.member_content(target, c.LEAVE, reason)
        return await self._send(EventDraft(room_id, c.MEMBER, sender, content, target))

    async def knock(self, user_id: str, room_id: str, reason: str | None = None) -> PersistedEvent:
        snapshot = await self._room(room_id)
        current = snapshot.membership(user_id)
        if current == c.JOIN:
            raise forbidden("You are already in the room")
        if current == c.BAN:
            raise forbidden("You are banned from this room")
        content = await self.member_content(user_id, c.KNOCK, reason)
        unsigned = {"knock_room_state": stripped_state(snapshot)}
        return await self._send(
            EventDraft(room_id, c.MEMBER, user_id, content, user_id, unsigned_extra=unsigned)
        )

    async def forget(self, user_id: str, room_id: str) -> None:
        ids.check_room_id(room_id)
        membership = await self.rooms.get_membership(room_id, user_id)
        if membership is None:
            raise not_found("Unknown room")
        if membership.membership in (c.JOIN, c.INVITE, c.KNOCK):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self.rooms.set_forgotten(room_id, user_id)
        for hook in self.forgotten_hooks:
            hook(user_id, room_id)

    async def leave_all_rooms(self, user_id: str) -> None:
        """On deactivation: leave (or reject) every room."""
        for membership in await self.rooms.list_user_memberships(user_id):
            if membership.membership in (c.JOIN, c.INVITE, c.KNOCK):
                try:
                    await self.leave(user_id, membership.room_id)
                except MatrixError:
                    pass

    async def refresh_profile_in_rooms(self, user_id: str) -> None:
        """After a profile change, send a new join event into every joined room (as Synapse does)."""
        for membership in await self.rooms.list_user_memberships(user_id):
            if membership.membership == c.JOIN:
                try:
                    await self.join(user_id, membership.room_id)
                except MatrixError:
                    pass
