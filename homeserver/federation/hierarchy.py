"""GET /_matrix/federation/v1/hierarchy/{roomId} (space_hierarchy.yaml, MSC2946): a space and its
direct children, for another server to walk for its users.

As Synapse: the room is shown when the requesting server could peek or join it — public,
knockable or world-readable rooms; rooms where it has a joined or invited user; restricted rooms
whose allowed rooms it has a user joined to — else 404. Children this server does not have are
left out; children the requesting server could not peek or join (or whose ACL denies it) are
listed in `inaccessible_children`. A room whose server ACL denies the origin is 403.
"""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.events.room_versions import get_room_version
from homeserver.federation.server_access import ServerAccess, host_joined
from homeserver.services.directory import DirectoryService, RoomSummary
from homeserver.services.spaces import SpaceHierarchyService, hierarchy_entry
from homeserver.state.current import RoomSnapshot
from homeserver.state.service import StateService

# Synapse's bound on the children summarised per space.
MAX_ROOMS_PER_SPACE = 50


def _host_invited(snapshot: RoomSnapshot, server_name: str) -> bool:
    return any(
        membership == c.INVITE and ids.server_of(user_id) == server_name
        for user_id, membership in snapshot.memberships.items()
    )


class FederationHierarchy:
    def __init__(self, directory: DirectoryService, state: StateService, access: ServerAccess) -> None:
        self.directory = directory
        self.state = state
        self.access = access

    async def hierarchy(self, origin: str, room_id: str, *, suggested_only: bool) -> dict[str, Any]:
        if not ids.is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room id: {room_id!r}")
        root = (await self.directory.summaries([room_id], with_children=True)).get(room_id)
        snapshot = await self.state.get(room_id)
        if root is None or snapshot is None:
            raise not_found(f"Unknown room: {room_id}")
        if not self.access.acl_allows(snapshot, origin):
            raise forbidden("Server is banned from room")
        if not await self._accessible(origin, root, snapshot):
            raise not_found(f"Unknown room: {room_id}")
        children = SpaceHierarchyService.children_of(root, suggested_only)
        child_ids = list(dict.fromkeys(e.room_id for e in children))[:MAX_ROOMS_PER_SPACE]
        known = await self.directory.summaries(child_ids, with_children=True)
        shown: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for child_id in child_ids:
            summary = known.get(child_id)
            child_snapshot = await self.state.get(child_id) if summary is not None else None
            if summary is None or child_snapshot is None:
                continue  # not a room this server has: others must ask elsewhere
            if self.access.acl_allows(child_snapshot, origin) and await self._accessible(
                origin, summary, child_snapshot
            ):
                shown.append(
                    hierarchy_entry(summary, SpaceHierarchyService.children_of(summary, suggested_only))
                )
            else:
                inaccessible.append(child_id)
        return {
            "room": hierarchy_entry(root, children),
            "children": shown,
            "inaccessible_children": inaccessible,
        }

    async def _accessible(self, origin: str, summary: RoomSummary, snapshot: RoomSnapshot) -> bool:
        """Could a user of `origin` peek or join the room (Synapse's test for servers)?"""
        if summary.join_rule in (c.PUBLIC, c.KNOCK, c.KNOCK_RESTRICTED) or summary.world_readable:
            return True
        if host_joined(snapshot, origin) or _host_invited(snapshot, origin):
            return True
        version = get_room_version(summary.room_version or "")
        restricted = version is not None and (
            (summary.join_rule == c.RESTRICTED and version.restricted_join_rule)
            or (summary.join_rule == c.KNOCK_RESTRICTED and version.knock_restricted_join_rule)
        )
        if restricted:
            for allowed_id in summary.allowed_room_ids:
                allowed = await self.state.get(allowed_id)
                if allowed is not None and host_joined(allowed, origin):
                    return True
        return False
