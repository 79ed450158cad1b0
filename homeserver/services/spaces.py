"""The space hierarchy (space_hierarchy.yaml, GET /rooms/{roomId}/hierarchy) over local rooms.

A depth-first walk along `m.space.child` events from the requested room, as Synapse does: children
in the spec's order (`order`, then the child event's timestamp, then the room id), each room at most
once, showing only rooms the requester may see (joined or invited, joinable, knockable, restricted to
a room they are in, or world-readable). A child room this server does not have is asked of the
servers in its `via` list (`/_matrix/federation/v1/hierarchy`, through `remote_hierarchy`, at most
`MAX_REMOTE_LOOKUPS` per request); the summaries of its children in that answer are used without
asking again, except for spaces, whose own children need their own answer.

Pagination is stateless, so any worker can serve the next page: the token records the request's
parameters and how many rooms were already returned, and the walk is repeated up to there (it is
deterministic for unchanged state).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
SPACE_CHILD = "m.space.child"
_ORDER = re.compile(r"[\x20-\x7e]{1,50}")
# Remote /hierarchy requests one client request may make (each has its own time limit).
MAX_REMOTE_LOOKUPS = 10

# (room_id, via, suggested_only) -> (the room's entry with children_state, child entries by room
# id, ids of the children the remote says nobody here could peek or join), None: nobody answered
RemoteHierarchyLookup = Callable[
    [str, Sequence[str], bool],
    Awaitable[tuple[dict[str, Any], dict[str, dict[str, Any]], frozenset[str]] | None],
]


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


@dataclass(frozen=True, slots=True)
class ChildLink:
    """An m.space.child event: a local event, or a stripped one from another server's answer."""

    room_id: str
    content: Mapping[str, Any]
    sender: str
    origin_server_ts: int

    @classmethod
    def from_event(cls, event: Event) -> ChildLink:
        return cls(event.state_key or "", event.content, event.sender, event.origin_server_ts)

    @classmethod
    def from_stripped(cls, raw: Any) -> ChildLink | None:
        """A valid stripped m.space.child (a room id, a non-empty `via`), else None."""
        if not isinstance(raw, dict) or raw.get("type") != SPACE_CHILD:
            return None
        room_id, content = raw.get("state_key"), raw.get("content")
        sender, ts = raw.get("sender"), raw.get("origin_server_ts", 0)
        if not isinstance(room_id, str) or not ids.is_valid_room_id(room_id) or not isinstance(content, dict):
            return None
        via = content.get("via")
        if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
            return None
        if not isinstance(sender, str) or not isinstance(ts, int) or isinstance(ts, bool):
            return None
        return cls(room_id, content, sender, ts)

    @property
    def via(self) -> list[str]:
        via = self.content.get("via")
        return [v for v in via if isinstance(v, str)] if isinstance(via, list) else []


def child_order_key(link: ChildLink) -> tuple[bool, str, int, str]:
    """The spec's ordering of m.space.child events: valid `order` first (by code point), then the
    event's origin_server_ts, then the child room id."""
    order = link.content.get("order")
    if isinstance(order, str) and _ORDER.fullmatch(order):
        return (False, order, link.origin_server_ts, link.room_id)
    return (True, "", link.origin_server_ts, link.room_id)


def _is_suggested(link: ChildLink) -> bool:
    return link.content.get("suggested") is True


def stripped_child(link: ChildLink) -> dict[str, Any]:
    return {
        "type": SPACE_CHILD,
        "state_key": link.room_id,
        "content": dict(link.content),
        "sender": link.sender,
        "origin_server_ts": link.origin_server_ts,
    }


def hierarchy_entry(summary: RoomSummary, children: Sequence[ChildLink]) -> dict[str, Any]:
    entry = summary.public_entry()
    if summary.room_version is not None:
        entry["room_version"] = summary.room_version
    if summary.encryption is not None:
        entry["encryption"] = summary.encryption
    if summary.join_rule in (c.RESTRICTED, c.KNOCK_RESTRICTED) and summary.allowed_room_ids:
        entry["allowed_room_ids"] = list(summary.allowed_room_ids)
    entry["children_state"] = [stripped_child(e) for e in children]
    return entry


def _opt_str(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) and value else None


def summary_from_entry(entry: Mapping[str, Any]) -> RoomSummary:
    """A room summary as another server gave it (a checked /hierarchy entry)."""
    allowed = entry.get("allowed_room_ids")
    joined = entry.get("num_joined_members")
    return RoomSummary(
        room_id=str(entry["room_id"]),
        num_joined_members=joined if isinstance(joined, int) and not isinstance(joined, bool) else 0,
        name=_opt_str(entry, "name"),
        topic=_opt_str(entry, "topic"),
        avatar_url=_opt_str(entry, "avatar_url"),
        canonical_alias=_opt_str(entry, "canonical_alias"),
        join_rule=_opt_str(entry, "join_rule"),
        history_visibility="world_readable" if entry.get("world_readable") is True else None,
        guest_access="can_join" if entry.get("guest_can_join") is True else None,
        room_type=_opt_str(entry, "room_type"),
        room_version=_opt_str(entry, "room_version"),
        encryption=_opt_str(entry, "encryption"),
        allowed_room_ids=tuple(a for a in allowed if isinstance(a, str)) if isinstance(allowed, list) else (),
    )


def links_of_entry(entry: Mapping[str, Any]) -> list[ChildLink]:
    raw = entry.get("children_state")
    links = [ChildLink.from_stripped(e) for e in raw] if isinstance(raw, list) else []
    return [link for link in links if link is not None]


def may_see(summary: RoomSummary, my_rooms: Mapping[str, tuple[str, int]]) -> bool:
    """Synapse's test for showing a room in a user's hierarchy (MSC3173 "can join or peek")."""
    version = get_room_version(summary.room_version or "")
    # Another server's summary may not name the room version: its join rule is then taken as
    # valid (as Synapse does).
    unknown = summary.room_version is None
    rule = summary.join_rule
    if rule == c.PUBLIC or summary.world_readable:
        return True
    knock = version is not None and version.knock_join_rule
    knock_restricted = version is not None and version.knock_restricted_join_rule
    if (rule == c.KNOCK and (unknown or knock)) or (
        rule == c.KNOCK_RESTRICTED and (unknown or knock_restricted)
    ):
        return True
    own = my_rooms.get(summary.room_id)
    if own is not None and own[0] in (c.JOIN, c.INVITE):
        return True
    restricted = (unknown and rule in (c.RESTRICTED, c.KNOCK_RESTRICTED)) or (
        version is not None
        and (
            (rule == c.RESTRICTED and version.restricted_join_rule)
            or (rule == c.KNOCK_RESTRICTED and version.knock_restricted_join_rule)
        )
    )
    if restricted:
        return any(my_rooms.get(room_id, ("", 0))[0] == c.JOIN for room_id in summary.allowed_room_ids)
    return False


class SpaceHierarchyService:
    def __init__(self, directory: DirectoryService, memberships: MembershipIndex) -> None:
        self.directory = directory
        self.memberships = memberships
        # Asks other servers about rooms this server does not have (federation/remote_rooms.py).
        self.remote_hierarchy: RemoteHierarchyLookup | None = None

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
        walk = _RemoteWalk(self.remote_hierarchy, suggested_only)
        # Depth-first: the next room to visit is the last on the stack.
        stack: list[tuple[str, int, tuple[str, ...]]] = [(room_id, 0, ())]
        visited: set[str] = set()
        shown = 0
        more = False
        while stack and len(visited) < MAX_VISITED:
            current, depth, via = stack.pop()
            if current in visited:
                continue
            visited.add(current)
            summary = known.get(current)
            if summary is None:
                summary = await walk.summary(current, via)
            if summary is None or not may_see(summary, my_rooms):
                continue
            if shown >= offset + limit:
                more = True
                break
            children = walk.children.get(current)
            if children is None:
                children = self.children_of(summary, suggested_only)
            if shown >= offset:
                rooms.append(hierarchy_entry(summary, children))
            shown += 1
            if children and (max_depth is None or depth < max_depth):
                unknown = [e.room_id for e in children if e.room_id not in known]
                if unknown:
                    known.update(await self.directory.summaries(unknown, with_children=True))
                stack.extend((e.room_id, depth + 1, tuple(e.via)) for e in reversed(children))

        result: dict[str, Any] = {"rooms": rooms}
        if more:
            result["next_batch"] = HierarchyToken(
                room_id, suggested_only, max_depth, offset + len(rooms)
            ).encode()
        return result

    @staticmethod
    def children_of(summary: RoomSummary, suggested_only: bool) -> list[ChildLink]:
        """A local room's children in the spec's order (none unless it is a space)."""
        if summary.room_type != SPACE:
            return []
        return _ordered([ChildLink.from_event(e) for e in summary.children], suggested_only)


def _ordered(links: Sequence[ChildLink], suggested_only: bool) -> list[ChildLink]:
    return sorted((e for e in links if not suggested_only or _is_suggested(e)), key=child_order_key)


class _RemoteWalk:
    """The rooms of one hierarchy request that other servers describe."""

    def __init__(self, lookup: RemoteHierarchyLookup | None, suggested_only: bool) -> None:
        self.lookup = lookup
        self.suggested_only = suggested_only
        self.lookups = 0
        # Entries of child rooms given in a parent's answer.
        self.entries: dict[str, dict[str, Any]] = {}
        # Children of the remote rooms visited.
        self.children: dict[str, list[ChildLink]] = {}
        # Rooms a remote said are inaccessible: not asked again.
        self.inaccessible: set[str] = set()

    async def summary(self, room_id: str, via: Sequence[str]) -> RoomSummary | None:
        if room_id in self.inaccessible:
            return None
        entry = self.entries.get(room_id)
        # A space named in a parent's answer still needs its own answer for its children.
        if (entry is None or entry.get("room_type") == SPACE) and via and self.lookup is not None:
            if self.lookups < MAX_REMOTE_LOOKUPS:
                self.lookups += 1
                found = await self.lookup(room_id, via, self.suggested_only)
                if found is not None:
                    entry, children, inaccessible = found
                    for child_id, child in children.items():
                        self.entries.setdefault(child_id, child)
                    self.inaccessible.update(inaccessible)
        if entry is None:
            return None
        summary = summary_from_entry(entry)
        links = links_of_entry(entry) if summary.room_type == SPACE else []
        self.children[room_id] = _ordered(links, self.suggested_only)
        return summary
