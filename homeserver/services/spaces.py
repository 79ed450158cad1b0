"""The space hierarchy (space_hierarchy.yaml, GET /rooms/{roomId}/hierarchy) over local rooms.

A depth-first walk along `m.space.child` events from the requested room, as Synapse does: children
in the spec's order (`order`, then the child event's timestamp, then the room id), each room at most
once, showing only rooms the requester may see (joined or invited, joinable, knockable, restricted to
a room they are in, or world-readable). Rooms this server does not have are skipped until federation
can fill them in.

Pagination is stateless, so any worker can serve the next page: the token records the request's
parameters and how many rooms were already returned, and the walk is repeated up to there (it is
deterministic for unchanged state).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core import ids
from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError, forbidden
from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.events.room_versions import get_room_version
from homeserver.services.directory import DirectoryService, RoomSummary
from homeserver.state.indexes import MembershipIndex

# Synapse's default and maximum number of rooms per page.
MAX_ROOMS = 50
# Rooms visited per request at most (pages far into a huge tree stop there).
MAX_VISITED = 10_000
SPACE = "m.space"
_ORDER = re.compile(r"[\x20-\x7e]{1,50}")


@dataclass(frozen=True, slots=True)
class HierarchyToken:
    room_id: str
    suggested_only: bool
    max_depth: int | None
    # Rooms returned by the previous pages.
    offset: int

    def encode(self) -> str:
        raw = hjson.dumps([self.room_id, self.suggested_only, self.max_depth, self.offset])
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str) -> HierarchyToken:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            room_id, suggested_only, max_depth, offset = hjson.loads(raw)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise MatrixError(400, "M_INVALID_PARAM", "Unknown pagination token") from exc
        if (
            not isinstance(room_id, str)
            or not isinstance(suggested_only, bool)
            or not (max_depth is None or isinstance(max_depth, int))
            or not isinstance(offset, int)
            or offset < 0
        ):
            raise MatrixError(400, "M_INVALID_PARAM", "Unknown pagination token")
        return cls(room_id, suggested_only, max_depth, offset)


def child_order_key(event: Event) -> tuple[bool, str, int, str]:
    """The spec's ordering of m.space.child events: valid `order` first (by code point), then the
    event's origin_server_ts, then the child room id."""
    order = event.content.get("order")
    if isinstance(order, str) and _ORDER.fullmatch(order):
        return (False, order, event.origin_server_ts, event.state_key or "")
    return (True, "", event.origin_server_ts, event.state_key or "")


def _is_suggested(event: Event) -> bool:
    return event.content.get("suggested") is True


def stripped_child(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "state_key": event.state_key,
        "content": dict(event.content),
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
    }


def hierarchy_entry(summary: RoomSummary, children: Sequence[Event]) -> dict[str, Any]:
    entry = summary.public_entry()
    if summary.room_version is not None:
        entry["room_version"] = summary.room_version
    if summary.encryption is not None:
        entry["encryption"] = summary.encryption
    if summary.join_rule in (c.RESTRICTED, c.KNOCK_RESTRICTED) and summary.allowed_room_ids:
        entry["allowed_room_ids"] = list(summary.allowed_room_ids)
    entry["children_state"] = [stripped_child(e) for e in children]
    return entry


def may_see(summary: RoomSummary, my_rooms: Mapping[str, tuple[str, int]]) -> bool:
    """Synapse's test for showing a room in a user's hierarchy (MSC3173 "can join or peek")."""
    version = get_room_version(summary.room_version or "")
    rule = summary.join_rule
    if rule == c.PUBLIC or summary.world_readable:
        return True
    if version is not None and (
        (rule == c.KNOCK and version.knock_join_rule)
        or (rule == c.KNOCK_RESTRICTED and version.knock_restricted_join_rule)
    ):
        return True
    own = my_rooms.get(summary.room_id)
    if own is not None and own[0] in (c.JOIN, c.INVITE):
        return True
    restricted = version is not None and (
        (rule == c.RESTRICTED and version.restricted_join_rule)
        or (rule == c.KNOCK_RESTRICTED and version.knock_restricted_join_rule)
    )
    if restricted:
        return any(my_rooms.get(room_id, ("", 0))[0] == c.JOIN for room_id in summary.allowed_room_ids)
    return False


class SpaceHierarchyService:
    def __init__(self, directory: DirectoryService, memberships: MembershipIndex) -> None:
        self.directory = directory
        self.memberships = memberships

    async def hierarchy(
        self,
        user_id: str,
        room_id: str,
        *,
        suggested_only: bool = False,
        max_depth: int | None = None,
        limit: int | None = None,
        from_token: str | None = None,
    ) -> dict[str, Any]:
        ids.check_room_id(room_id)
        if max_depth is not None and max_depth < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "'max_depth' must be a non-negative integer")
        if limit is not None and limit <= 0:
            raise MatrixError(400, "M_INVALID_PARAM", "'limit' must be a positive integer")
        limit = MAX_ROOMS if limit is None else min(limit, MAX_ROOMS)
        offset = 0
        if from_token:
            token = HierarchyToken.decode(from_token)
            if (token.room_id, token.suggested_only, token.max_depth) != (room_id, suggested_only, max_depth):
                raise MatrixError(
                    400, "M_INVALID_PARAM", "suggested_only and max_depth cannot change on paginated requests"
                )
            offset = token.offset

        my_rooms = await self.memberships.load_user(user_id)
        known = await self.directory.summaries([room_id], with_children=True)
        root = known.get(room_id)
        if root is None or not may_see(root, my_rooms):
            raise forbidden(f"User {user_id} not in room {room_id}, and room previews are disabled")

        rooms: list[dict[str, Any]] = []
        # Depth-first: the next room to visit is the last on the stack.
        stack: list[tuple[str, int]] = [(room_id, 0)]
        visited: set[str] = set()
        shown = 0
        more = False
        while stack and len(visited) < MAX_VISITED:
            current, depth = stack.pop()
            if current in visited:
                continue
            visited.add(current)
            summary = known.get(current)
            if summary is None or not may_see(summary, my_rooms):
                continue
            if shown >= offset + limit:
                more = True
                break
            children = self._children(summary, suggested_only)
            if shown >= offset:
                rooms.append(hierarchy_entry(summary, children))
            shown += 1
            if children and (max_depth is None or depth < max_depth):
                unknown = [e.state_key for e in children if e.state_key and e.state_key not in known]
                if unknown:
                    known.update(await self.directory.summaries(unknown, with_children=True))
                stack.extend((e.state_key or "", depth + 1) for e in reversed(children))

        result: dict[str, Any] = {"rooms": rooms}
        if more:
            result["next_batch"] = HierarchyToken(
                room_id, suggested_only, max_depth, offset + len(rooms)
            ).encode()
        return result

    @staticmethod
    def _children(summary: RoomSummary, suggested_only: bool) -> list[Event]:
        if summary.room_type != SPACE:
            return []
        children = [e for e in summary.children if not suggested_only or _is_suggested(e)]
        return sorted(children, key=child_order_key)
