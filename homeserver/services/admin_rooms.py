"""Synapse's room admin API: list and inspect rooms, block them, make a room admin, join users,
forward extremities, and the media a room references.

Shapes follow Synapse's docs/admin_api/rooms.md and media_admin_api.md so synapse-admin and
scripts work unchanged. Room deletion and history purges are background jobs (room_deletion.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.events.auth import CREATOR_POWER_LEVEL, user_power_level
from homeserver.persist.persister import EventDraft, EventPersister
from homeserver.services.audit_sink import AuditSink, NoAudit
from homeserver.services.directory import DirectoryService
from homeserver.services.membership import MembershipService
from homeserver.services.serialize import EventSerializer
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.storage.stores.admin_rooms import AdminRoomStore, RoomCounts
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.users import UserStore

# order_by value -> (field of the room entry, ascending by default). Synapse's RoomSortOrder.
ORDERS: dict[str, tuple[str, bool]] = {
    "name": ("name", True),
    "alphabetical": ("name", True),  # deprecated alias
    "canonical_alias": ("canonical_alias", True),
    "joined_members": ("joined_members", False),
    "size": ("joined_members", False),  # deprecated alias
    "joined_local_members": ("joined_local_members", False),
    "version": ("version", False),
    "creator": ("creator", True),
    "encryption": ("encryption", True),
    "federatable": ("federatable", True),
    "public": ("public", True),
    "join_rules": ("join_rules", True),
    "guest_access": ("guest_access", True),
    "history_visibility": ("history_visibility", True),
    "state_events": ("state_events", False),
}


@dataclass(frozen=True, slots=True)
class RoomListQuery:
    start: int = 0
    limit: int = 100
    order_by: str = "name"
    backwards: bool = False
    search_term: str | None = None
    public_rooms: bool | None = None
    empty_rooms: bool | None = None


def _str(content: Mapping[str, Any] | None, key: str) -> str | None:
    value = (content or {}).get(key)
    return value if isinstance(value, str) else None


def room_entry(
    room_id: str,
    version: str,
    creator: str | None,
    is_public: bool,
    state: Mapping[str, Mapping[str, Any]],
    counts: RoomCounts | None,
) -> dict[str, Any]:
    """One room as GET /_synapse/admin/v1/rooms lists it."""
    create = state.get(c.CREATE, {})
    federate = create.get("m.federate", True)
    return {
        "room_id": room_id,
        "name": _str(state.get("m.room.name"), "name"),
        "canonical_alias": _str(state.get("m.room.canonical_alias"), "alias"),
        "joined_members": counts.joined_members if counts else 0,
        "joined_local_members": counts.joined_local_members if counts else 0,
        "version": version,
        "creator": creator,
        "encryption": _str(state.get("m.room.encryption"), "algorithm"),
        "federatable": federate is not False,
        "public": is_public,
        "join_rules": _str(state.get(c.JOIN_RULES), "join_rule"),
        "guest_access": _str(state.get("m.room.guest_access"), "guest_access"),
        "history_visibility": _str(state.get(c.HISTORY_VISIBILITY), "history_visibility"),
        "state_events": counts.state_events if counts else 0,
        "room_type": _str(create, "type"),
    }


def _matches(entry: Mapping[str, Any], term: str) -> bool:
    # As Synapse: the name or the canonical alias's localpart contains the term (case-insensitive),
    # or the term is the room id.
    lowered = term.lower()
    name = entry["name"]
    alias = entry["canonical_alias"]
    if isinstance(name, str) and lowered in name.lower():
        return True
    if isinstance(alias, str) and alias.startswith("#") and lowered in alias.lower().split(":", 1)[0]:
        return True
    return bool(entry["room_id"] == term)


def sort_rooms(entries: list[dict[str, Any]], order_by: str, backwards: bool) -> list[dict[str, Any]]:
    field, ascending = ORDERS[order_by]
    if backwards:
        ascending = not ascending
    present = [e for e in entries if e[field] is not None]
    missing = [e for e in entries if e[field] is None]
    present.sort(key=lambda e: (e[field], e["room_id"]), reverse=not ascending)
    missing.sort(key=lambda e: e["room_id"], reverse=not ascending)
    # NULLs sort last going up and first going down, as PostgreSQL orders them.
    return present + missing if ascending else missing + present


class AdminRoomService:
    def __init__(
        self,
        store: AdminRoomStore,
        rooms: RoomStore,
        events: EventStore,
        state: CurrentStateCache,
        users: UserStore,
        persister: EventPersister,
        membership: MembershipService,
        directory: DirectoryService,
        serializer: EventSerializer,
        clock: Clock,
        *,
        server_name: str,
        audit: AuditSink | None = None,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.events = events
        self.state = state
        self.users = users
        self.persister = persister
        self.membership = membership
        self.directory = directory
        self.serializer = serializer
        self.clock = clock
        self.server_name = server_name
        self.audit: AuditSink = audit or NoAudit()

    def _is_local(self, user_id: str) -> bool:
        return ids.server_of(user_id) == self.server_name

    async def snapshot(self, room_id: str) -> RoomSnapshot:
        if not ids.is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"{room_id} is not a legal room ID")
        snapshot = await self.state.get(room_id)
        if snapshot is None or await self.rooms.get_room(room_id) is None:
            raise not_found("Room not found")
        return snapshot

    async def resolve(self, room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith("#"):
            return await self.directory.room_id_for_alias(room_id_or_alias)
        if not ids.is_valid_room_id(room_id_or_alias):
            raise MatrixError(
                400, "M_INVALID_PARAM", f"{room_id_or_alias} was not legal room ID or room alias"
            )
        return room_id_or_alias

    # -- GET /v1/rooms -------------------------------------------------------------------------------

    async def list_rooms(self, query: RoomListQuery) -> dict[str, Any]:
        rooms = await self.store.list_rooms()
        state = await self.store.summary_state()
        counts = await self.store.counts(self.server_name)
        entries = [
            room_entry(room_id, version, creator, public, state.get(room_id, {}), counts.get(room_id))
            for room_id, version, creator, public in rooms
        ]
        if query.search_term is not None:
            entries = [e for e in entries if _matches(e, query.search_term)]
        if query.public_rooms is not None:
            entries = [e for e in entries if e["public"] is query.public_rooms]
        if query.empty_rooms is not None:
            entries = [e for e in entries if (e["joined_members"] == 0) is query.empty_rooms]
        entries = sort_rooms(entries, query.order_by, query.backwards)
        total = len(entries)
        response: dict[str, Any] = {
            "offset": query.start,
            "rooms": entries[query.start : query.start + query.limit],
            "total_rooms": total,
        }
        if query.start + query.limit < total:
            response["next_batch"] = query.start + query.limit
        if query.start > 0:
            response["prev_batch"] = query.start - query.limit if query.start > query.limit else 0
        return response

    # -- GET /v1/rooms/{roomId} ----------------------------------------------------------------------

    async def room_details(self, room_id: str) -> dict[str, Any]:
        snapshot = await self.snapshot(room_id)
        row = await self.rooms.get_room(room_id)
        assert row is not None
        state = {key[0]: dict(event.content) for key, event in snapshot.state.items() if key[1] == ""}
        counts = (await self.store.counts(self.server_name, room_id)).get(room_id)
        entry = room_entry(room_id, row.room_version, row.creator, row.is_public, state, counts)
        tombstone = state.get("m.room.tombstone")
        entry.update(
            {
                "topic": _str(state.get("m.room.topic"), "topic"),
                "avatar": _str(state.get("m.room.avatar"), "url"),
                "joined_local_devices": await self.store.count_local_devices_in_room(
                    room_id, self.server_name
                ),
                "forgotten": await self.store.all_local_members_forgot(room_id, self.server_name),
                "tombstoned": tombstone is not None,
                "replacement_room": _str(tombstone, "replacement_room"),
            }
        )
        return entry

    async def members(self, room_id: str) -> dict[str, Any]:
        snapshot = await self.snapshot(room_id)
        members = sorted(snapshot.members_with(c.JOIN))
        return {"members": members, "total": len(members)}

    async def room_state(self, room_id: str, event_type: str | None) -> dict[str, Any]:
        snapshot = await self.snapshot(room_id)
        event_ids = [
            e.event_id for key, e in snapshot.state.items() if event_type is None or key[0] == event_type
        ]
        stored = await self.events.get_events_ordered(event_ids)
        return {"state": await self.serializer.serialize(stored)}

    # -- block ---------------------------------------------------------------------------------------

    async def get_block(self, room_id: str) -> dict[str, Any]:
        ids.check_room_id(room_id)
        by = await self.store.get_block(room_id)
        return {"block": True, "user_id": by} if by is not None else {"block": False}

    async def set_block(self, admin: str, room_id: str, block: bool) -> dict[str, Any]:
        ids.check_room_id(room_id)
        if block:
            await self.store.set_block(room_id, admin, self.clock.time_ms())
        else:
            await self.store.delete_block(room_id)
        await self.audit.record("room.block" if block else "room.unblock", actor=admin, target=room_id)
        return {"block": block}

    async def check_not_blocked(self, user_id: str, room_id: str) -> None:
        """A membership check: nobody joins or is invited into a blocked room."""
        if await self.store.get_block(room_id) is not None:
            raise MatrixError(403, "M_UNKNOWN", "This room has been blocked on this server")  # as Synapse

    # -- make_room_admin -----------------------------------------------------------------------------

    async def make_room_admin(self, admin: str, room_id_or_alias: str, user_id: str | None) -> None:
        room_id = await self.resolve(room_id_or_alias)
        target = user_id or admin
        ids.check_user_id(target)
        if not self._is_local(target):
            raise MatrixError(400, "M_INVALID_PARAM", "Only local users can be admins of this homeserver")
        snapshot = await self.snapshot(room_id)
        # The local joined member with the highest power acts (Synapse does the same).
        local_joined = [u for u in snapshot.members_with(c.JOIN) if self._is_local(u)]
        levels = {u: user_power_level(u, snapshot.state) for u in local_joined}
        if not levels:
            raise MatrixError(400, "M_UNKNOWN", "No local admin user in room")
        acting = max(sorted(levels), key=lambda u: levels[u])
        top = levels[acting]
        pl_event = snapshot.get(c.POWER_LEVELS)
        content: dict[str, Any] = dict(pl_event.content) if pl_event is not None else {}
        if top >= CREATOR_POWER_LEVEL:
            # Room version 12 creators have an implicit, unlimited level that cannot be written
            # into `users`: grant the highest explicit level (at least 100) instead.
            explicit = [v for v in (content.get("users") or {}).values() if isinstance(v, int)]
            top = max([100, *explicit])
        if user_power_level(target, snapshot.state) < top:
            users = dict(content.get("users") or {})
            users[target] = top
            content["users"] = users
            await self.persister.send_one(EventDraft(room_id, c.POWER_LEVELS, acting, content, ""))
        snapshot = await self.snapshot(room_id)
        if snapshot.membership(target) != c.JOIN:
            join_rule = snapshot.content_of(c.JOIN_RULES).get("join_rule")
            if join_rule != "public" and snapshot.membership(target) != c.INVITE:
                await self.membership.invite(acting, room_id, target)
        await self.audit.record("room.make_admin", actor=admin, target=room_id, detail={"user_id": target})

    # -- POST /v1/join/{roomIdOrAlias} ---------------------------------------------------------------

    async def join_user(self, admin: str, room_id_or_alias: str, user_id: str) -> str:
        ids.check_user_id(user_id)
        if not self._is_local(user_id):
            raise MatrixError(400, "M_UNKNOWN", "This endpoint can only be used with local users")
        if await self.users.get_user(user_id) is None:
            raise not_found("User not found")
        room_id = await self.resolve(room_id_or_alias)
        snapshot = await self.snapshot(room_id)
        await self.check_not_blocked(user_id, room_id)
        join_rule = snapshot.content_of(c.JOIN_RULES).get("join_rule")
        if snapshot.membership(user_id) != c.JOIN:
            if join_rule != "public" and snapshot.membership(user_id) != c.INVITE:
                # As Synapse: the admin must be in the room to invite the user first.
                if snapshot.membership(admin) != c.JOIN:
                    raise forbidden(f"{admin} not in room {room_id}.")
                await self.membership.invite(admin, room_id, user_id)
            await self.membership.join(user_id, room_id)
        await self.audit.record("room.join_user", actor=admin, target=room_id, detail={"user_id": user_id})
        return room_id

    # -- forward extremities -------------------------------------------------------------------------

    async def forward_extremities(self, room_id_or_alias: str) -> dict[str, Any]:
        room_id = await self.resolve(room_id_or_alias)
        await self.snapshot(room_id)
        results = [
            # We keep no state groups; the key is there for tools that read it.
            {"event_id": event_id, "state_group": None, "depth": depth, "received_ts": ts}
            for event_id, depth, ts in await self.store.list_extremities(room_id)
        ]
        return {"count": len(results), "results": results}

    async def delete_forward_extremities(self, admin: str, room_id_or_alias: str) -> dict[str, Any]:
        room_id = await self.resolve(room_id_or_alias)
        await self.snapshot(room_id)
        extremities = await self.store.list_extremities(room_id)
        deleted = 0
        if len(extremities) > 1:
            deleted = await self.store.keep_only_extremity(room_id, extremities[0][0])
            # The cached snapshot carries the old extremities into the next event's prev_events.
            self.state.evict(room_id)
        await self.audit.record("room.delete_extremities", actor=admin, target=room_id)
        return {"deleted": deleted}

    # -- GET /v1/room/{roomId}/media -----------------------------------------------------------------

    async def room_media(self, room_id: str) -> tuple[list[str], list[str]]:
        """(local, remote) mxc URIs referenced by the room's (unencrypted) events."""
        await self.snapshot(room_id)
        local: list[str] = []
        remote: list[str] = []
        seen: set[str] = set()
        for stored in await self.store.events_with_urls(room_id):
            content = stored.get("content")
            if not isinstance(content, dict):
                continue
            info = content.get("info")
            candidates = [content.get("url")]
            if isinstance(info, dict):
                candidates.append(info.get("thumbnail_url"))
            for uri in candidates:
                if not isinstance(uri, str) or not uri.startswith("mxc://") or uri in seen:
                    continue
                server, _, media_id = uri[len("mxc://") :].partition("/")
                if not server or not media_id:
                    continue
                seen.add(uri)
                (local if server == self.server_name else remote).append(uri)
        return local, remote
