"""Membership changes: join, invite, leave, kick, ban, unban, knock, forget.

Pre-checks here give clients the errors Synapse gives; the auth rules, run by the persister against
the room state at that instant, remain the authority.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.events.context import EventContext, EventKind
from homeserver.persist.local import build_local_context
from homeserver.persist.persister import EventDraft, EventPersister, PersistedEvent
from homeserver.services.audit import AuditLog
from homeserver.services.restrictions import UserRestrictions
from homeserver.services.room_presets import STRIPPED_STATE_TYPES
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.users import UserStore

if TYPE_CHECKING:
    from homeserver.federation.membership_client import RemoteMembership


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
        audit: AuditLog | None = None,
        restrictions: UserRestrictions | None = None,
    ) -> None:
        self.persister = persister
        self.state = state
        self.rooms = rooms
        self.users = users
        self.server_name = server_name
        # Kicks, bans, unbans and server admins' changes to others' membership are audited.
        self.audit = audit
        self.restrictions = restrictions
        # Called with (user_id, room_id) once a room is forgotten (the membership index hides it).
        self.forgotten_hooks: list[Callable[[str, str], None]] = []
        # (user_id, room_id) checks before a join or an invite (e.g. admin-blocked rooms); raise to refuse.
        self.join_checks: list[Callable[[str, str], Awaitable[None]]] = []
        # Joins, knocks and invites across servers (federation/membership_client.py); None: local only.
        self.remote: RemoteMembership | None = None

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

    async def _audit(
        self, action: str, sender: str, target: str, room_id: str, membership: str, reason: str | None
    ) -> None:
        if self.audit is None:
            return
        detail: dict[str, Any] = {"room_id": room_id, "membership": membership}
        if reason is not None:
            detail["reason"] = reason
        await self.audit.record(action, actor=sender, target=target, detail=detail)

    async def _check_suspended(self, user_id: str) -> None:
        if self.restrictions is not None:
            await self.restrictions.check_not_suspended(user_id)

    # -- operations ------------------------------------------------------------------------------

    async def join(
        self,
        user_id: str,
        room_id: str,
        reason: str | None = None,
        content: dict[str, Any] | None = None,
        via: Sequence[str] = (),
    ) -> PersistedEvent:
        """Join (or re-join). `content` replaces the profile-derived member content, e.g. a
        per-room display name set through PUT /state/m.room.member/{userId}. A room this server is
        not in is joined through `via` (and the servers the room id or an invite names)."""
        ids.check_room_id(room_id)
        for check in self.join_checks:  # first: a blocked room may be unknown here (purged)
            await check(user_id, room_id)
        known = await self.state.get(room_id)
        if self.remote is not None and self._needs_remote(known):
            await self._check_suspended(user_id)
            servers = await self._servers_for(room_id, user_id, known, via)
            if not servers:
                raise not_found("Unknown room, and no server to join it through")
            if content is not None:
                content = {**content, "membership": c.JOIN}
            else:
                content = await self.member_content(user_id, c.JOIN, reason)
            return await self.remote.join(user_id, room_id, servers, content)
        snapshot = await self._room(room_id)
        if snapshot.membership(user_id) == c.BAN:
            raise forbidden("You are banned from this room")
        await self._check_suspended(user_id)
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

    def _needs_remote(self, snapshot: RoomSnapshot | None) -> bool:
        """True for a room this server cannot act in alone: unknown, known only by an invite or a
        knock, or one where only other servers' users are joined."""
        if snapshot is None or not snapshot.state:
            return True
        suffix = ":" + self.server_name
        joined = snapshot.members_with(c.JOIN)
        return bool(joined) and not any(u.endswith(suffix) for u in joined)

    async def _servers_for(
        self, room_id: str, user_id: str, snapshot: RoomSnapshot | None, via: Sequence[str]
    ) -> list[str]:
        """Servers to try, in order: the client's, the inviter's (or the one that took a knock),
        the room id's, then those of the room's joined members we know of."""
        servers = [s for s in via if isinstance(s, str) and s]
        row = await self.rooms.get_membership(room_id, user_id)
        if row is not None and row.membership in (c.INVITE, c.KNOCK):
            servers.append(ids.server_of(row.sender))
            # the servers of the stripped state's senders (a v12 room id names no server)
            stored = await self.persister.events.get_event(row.event_id)
            unsigned = stored.event.unsigned if stored is not None else {}
            for key in ("invite_room_state", "knock_room_state"):
                stripped = unsigned.get(key)
                for entry in stripped if isinstance(stripped, list) else []:
                    sender = entry.get("sender") if isinstance(entry, dict) else None
                    if isinstance(sender, str):
                        servers.append(ids.server_of(sender))
        servers.append(ids.server_of(room_id))
        if snapshot is not None:
            servers.extend(sorted({ids.server_of(u) for u in snapshot.members_with(c.JOIN)}))
        return [s for s in dict.fromkeys(servers) if s and s != self.server_name]

    async def invite(
        self, sender: str, room_id: str, target: str, *, reason: str | None = None, is_direct: bool = False
    ) -> PersistedEvent | None:
        """The invite event; None when the sender is shadow-banned (the invite is silently dropped)."""
        ids.check_user_id(target)
        if self.restrictions is not None and await self.restrictions.gate_send(sender):
            return None
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
        for check in self.join_checks:
            await check(target, room_id)
        content = await self.member_content(target, c.INVITE, reason)
        if is_direct:
            content["is_direct"] = True
        sender_member = snapshot.get(c.MEMBER, sender)
        unsigned = {"invite_room_state": stripped_state(snapshot, [sender_member] if sender_member else [])}
        draft = EventDraft(room_id, c.MEMBER, sender, content, target, unsigned_extra=unsigned)
        if ids.server_of(target) != self.server_name and self.remote is not None:
            persisted = await self._invite_remote(draft, snapshot)
        else:
            persisted = await self._send(draft)
        sender_user = await self.users.get_user(sender) if self.audit is not None else None
        if sender_user is not None and sender_user.is_admin:
            await self._audit("room.membership", sender, target, room_id, c.INVITE, reason)
        return persisted

    async def _invite_remote(self, draft: EventDraft, snapshot: RoomSnapshot) -> PersistedEvent:
        """An invite of another server's user: built and authorised here, countersigned by their
        server (invite v2), then persisted like any local event."""
        assert self.remote is not None
        ctx = build_local_context(
            draft,
            snapshot,
            origin_server_ts=self.persister.clock.time_ms(),
            server_name=self.server_name,
            signing_key=self.persister.signing_key,
        )
        signed = await self.remote.invite(ctx.event)
        context = EventContext(
            signed, EventKind.LOCAL_NEW, ctx.state_before, state_group_before=ctx.state_group_before
        )
        return (await self.persister.persist([context]))[0]

    async def _out_of_band_membership(self, room_id: str, user_id: str, snapshot: RoomSnapshot | None) -> Any:
        """The user's invite or knock when it is not part of the room state we hold (a room this
        server is not in): the stored member event, else None."""
        row = await self.rooms.get_membership(room_id, user_id)
        if row is None or row.membership not in (c.INVITE, c.KNOCK):
            return None
        in_state = snapshot.get(c.MEMBER, user_id) if snapshot is not None else None
        if in_state is not None and in_state.event_id == row.event_id:
            return None
        stored = await self.persister.events.get_event(row.event_id)
        return stored.event if stored is not None else None

    async def leave(self, user_id: str, room_id: str, reason: str | None = None) -> PersistedEvent:
        ids.check_room_id(room_id)
        known = await self.state.get(room_id)
        if self.remote is not None:
            pending = await self._out_of_band_membership(room_id, user_id, known)
            if pending is not None:
                servers = await self._servers_for(room_id, user_id, known, ())
                content = await self.member_content(user_id, c.LEAVE, reason)
                return await self.remote.leave(user_id, room_id, servers, content, pending)
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
        await self._check_suspended(sender)
        snapshot = await self._room(room_id)
        if snapshot.membership(target) not in (c.JOIN, c.INVITE, c.KNOCK):
            raise forbidden(f"{target} is not in the room")
        content = await self.member_content(target, c.LEAVE, reason)
        persisted = await self._send(EventDraft(room_id, c.MEMBER, sender, content, target))
        await self._audit("room.kick", sender, target, room_id, c.LEAVE, reason)
        return persisted

    async def ban(self, sender: str, room_id: str, target: str, reason: str | None = None) -> PersistedEvent:
        ids.check_user_id(target)
        await self._check_suspended(sender)
        await self._room(room_id)
        content = await self.member_content(target, c.BAN, reason)
        persisted = await self._send(EventDraft(room_id, c.MEMBER, sender, content, target))
        await self._audit("room.ban", sender, target, room_id, c.BAN, reason)
        return persisted

    async def unban(
        self, sender: str, room_id: str, target: str, reason: str | None = None
    ) -> PersistedEvent:
        ids.check_user_id(target)
        await self._check_suspended(sender)
        snapshot = await self._room(room_id)
        if snapshot.membership(target) != c.BAN:
            raise forbidden(f"{target} is not banned")
        content = await self.member_content(target, c.LEAVE, reason)
        persisted = await self._send(EventDraft(room_id, c.MEMBER, sender, content, target))
        await self._audit("room.unban", sender, target, room_id, c.LEAVE, reason)
        return persisted

    async def knock(
        self, user_id: str, room_id: str, reason: str | None = None, via: Sequence[str] = ()
    ) -> PersistedEvent:
        ids.check_room_id(room_id)
        known = await self.state.get(room_id)
        if self.remote is not None and self._needs_remote(known):
            await self._check_suspended(user_id)
            servers = await self._servers_for(room_id, user_id, known, via)
            if not servers:
                raise not_found("Unknown room, and no server to knock through")
            content = await self.member_content(user_id, c.KNOCK, reason)
            return await self.remote.knock(user_id, room_id, servers, content)
        snapshot = await self._room(room_id)
        current = snapshot.membership(user_id)
        if current == c.JOIN:
            raise forbidden("You are already in the room")
        if current == c.BAN:
            raise forbidden("You are banned from this room")
        await self._check_suspended(user_id)
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
