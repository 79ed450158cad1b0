"""/sync extensions for receipts, typing, presence and ignored users' invites.

- `ReceiptsExtension`: the room's `m.receipt` ephemeral event (private receipts only the owner's).
- `TypingExtension`: the room's `m.typing` ephemeral event.
- `PresenceExtension`: top-level `presence.events` (`m.presence`).
- `IgnoreExtension`: drops invites sent by users the syncing user ignores.

Every `rooms_changed` answers from the services' in-memory change logs (no database unless the
token predates this process), so an incremental sync pays only for what changed. A room the user
joined since the token gets the full current receipts and typing set, as on an initial sync.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.tokens import StreamToken
from homeserver.events import constants as c
from homeserver.services.ignore import IgnoreService
from homeserver.services.presence import PresenceService
from homeserver.services.receipts import ReceiptService
from homeserver.services.typing import TypingService
from homeserver.state.current import CurrentStateCache
from homeserver.state.indexes import MembershipIndex
from homeserver.sync.service import SyncExtension, SyncRequest

_RECEIPT_PROBE = {"type": "m.receipt", "content": {}}
_TYPING_PROBE = {"type": "m.typing", "content": {}}


def _append_ephemeral(room: dict[str, Any], event: dict[str, Any]) -> None:
    room.setdefault("ephemeral", {"events": []})["events"].append(event)


def _newly_joined(
    memberships: MembershipIndex, user_id: str, room_id: str, since: StreamToken, now: StreamToken
) -> bool:
    entry = (memberships.rooms_of(user_id) or {}).get(room_id)
    return entry is not None and entry[0] == c.JOIN and since.events < entry[1] <= now.events


class ReceiptsExtension(SyncExtension):
    ROOMS = "receipts.rooms"
    PREFETCHED = "receipts.prefetched"

    def __init__(self, receipts: ReceiptService, memberships: MembershipIndex) -> None:
        self.receipts = receipts
        self.memberships = memberships

    async def rooms_changed(
        self, req: SyncRequest, since: StreamToken, now: StreamToken, joined: set[str]
    ) -> set[str]:
        rooms: set[str] = set()
        if since.receipts < now.receipts and not req.filter.room.ephemeral.blocks_all:
            rooms = await self.receipts.rooms_changed(req.user_id, since.receipts, joined)
        req.extras[self.ROOMS] = rooms
        return rooms

    async def room_part(
        self,
        req: SyncRequest,
        room_id: str,
        since: StreamToken | None,
        now: StreamToken,
        room: dict[str, Any],
    ) -> None:
        if not req.filter.room.ephemeral.matches_event(_RECEIPT_PROBE, room_id):
            return
        if since is None or _newly_joined(self.memberships, req.user_id, room_id, since, now):
            if since is None and self.PREFETCHED not in req.extras:
                req.extras[self.PREFETCHED] = True
                joined = self.memberships.rooms_of(req.user_id) or {}
                await self.receipts.prefetch(r for r, (m, _) in joined.items() if m == c.JOIN)
            events = await self.receipts.room_events(req.user_id, room_id, None)
        elif room_id in req.extras.get(self.ROOMS, ()):
            events = await self.receipts.room_events(req.user_id, room_id, since.receipts)
        else:
            return
        for event in events:
            _append_ephemeral(room, event)


class TypingExtension(SyncExtension):
    def __init__(self, typing: TypingService, memberships: MembershipIndex) -> None:
        self.typing = typing
        self.memberships = memberships

    async def rooms_changed(
        self, req: SyncRequest, since: StreamToken, now: StreamToken, joined: set[str]
    ) -> set[str]:
        if req.filter.room.ephemeral.blocks_all:
            return set()
        return self.typing.rooms_changed(since.typing, joined)

    async def room_part(
        self,
        req: SyncRequest,
        room_id: str,
        since: StreamToken | None,
        now: StreamToken,
        room: dict[str, Any],
    ) -> None:
        if not req.filter.room.ephemeral.matches_event(_TYPING_PROBE, room_id):
            return
        full = since is None or _newly_joined(self.memberships, req.user_id, room_id, since, now)
        event = self.typing.room_event(room_id, None if full or since is None else since.typing)
        if event is not None:
            _append_ephemeral(room, event)


class PresenceExtension(SyncExtension):
    def __init__(self, presence: PresenceService, memberships: MembershipIndex) -> None:
        self.presence = presence
        self.memberships = memberships

    async def global_part(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken, response: dict[str, Any]
    ) -> bool:
        flt = req.filter.presence
        if not self.presence.enabled or flt.blocks_all:
            return False
        rooms = self.memberships.rooms_of(req.user_id) or {}
        joined = {r for r, (m, pos) in rooms.items() if m == c.JOIN and pos <= now.events}
        new_rooms: list[str] = []
        if since is not None:
            new_rooms = [r for r in joined if since.events < rooms[r][1]]
            if since.presence >= now.presence and not new_rooms:
                return False
        rows = await self.presence.sync_states(
            req.user_id, since.presence if since is not None else None, joined, new_rooms
        )
        now_ms = self.presence.clock.time_ms()
        events = [self.presence.event(r, now_ms) for r in rows if flt.matches("m.presence", r.user_id)]
        if not events:
            return False
        response.setdefault("presence", {"events": []})["events"] = events
        return True


class IgnoreExtension(SyncExtension):
    """Invites from ignored users never reach the client (their timeline events are hidden by
    VisibilityService.filter_events)."""

    def __init__(self, ignore: IgnoreService, state: CurrentStateCache) -> None:
        self.ignore = ignore
        self.state = state

    async def global_part(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken, response: dict[str, Any]
    ) -> bool:
        invites = response.get("rooms", {}).get("invite")
        if not invites:
            return False
        ignored = await self.ignore.ignored_by(req.user_id)
        if not ignored:
            return False
        for room_id in list(invites):
            # The invite_state ends with the invite itself (also for an invite received over
            # federation, which is not part of any room state here).
            stripped = invites[room_id].get("invite_state", {}).get("events") or [{}]
            member = stripped[-1]
            if member.get("type") == c.MEMBER and member.get("sender") in ignored:
                del invites[room_id]
        return False
