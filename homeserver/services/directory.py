"""Room aliases and the published room directory (client-server "Room aliases" and "Published room
directory"), with Synapse's permission model where the spec leaves it open:

- creating an alias needs `alias_creation_rules` to allow it and, unless
  `require_membership_for_aliases: false` or the user is a server admin, membership of the room;
- deleting one is for its creator, server admins, and members who may send
  `m.room.canonical_alias` (the alias is then also dropped from that event when possible);
- changing a room's directory visibility is for server admins and members who may send
  `m.room.canonical_alias`; publishing also needs `room_list_publication_rules` to allow it;
- the listing shows published rooms that are joinable or knockable (or world-readable) and have
  joined members, largest first.

Remote aliases are resolved over federation (`remote_alias`, set by the container); other servers'
directories are read through `federation/remote_rooms.py`, and ours is served to them
(`api/federation/public_rooms.py`) when `allow_public_rooms_over_federation` is on.
"""

from __future__ import annotations

import base64
import binascii
import logging
import string
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from homeserver.core import ids
from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events import constants as c
from homeserver.events.auth import can_send
from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict
from homeserver.http.requester import Requester
from homeserver.state.current import CurrentStateCache
from homeserver.storage.stores.directory import DirectoryStore, StateRef
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.rooms import RoomStore

logger = logging.getLogger(__name__)

CANONICAL_ALIAS = "m.room.canonical_alias"
SPACE_CHILD = "m.space.child"
# Current state (state key "") a directory entry or room summary is built from.
SUMMARY_TYPES = (
    c.CREATE,
    c.JOIN_RULES,
    c.HISTORY_VISIBILITY,
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    CANONICAL_ALIAS,
    "m.room.guest_access",
    "m.room.encryption",
)
# Join rules under which a published room is listed (any published world-readable room is too).
LISTED_JOIN_RULES = frozenset({c.PUBLIC, c.KNOCK, c.KNOCK_RESTRICTED})
# Synapse's cap on rooms per /publicRooms response.
MAX_PUBLIC_ROOMS = 100

# (user_id, room_id, aliases) -> allowed
PublishRule = Callable[[str, str, Collection[str]], bool]
AliasRule = Callable[[str, str, str], bool]
SendState = Callable[[str, str, str, str, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """What the directory and the space hierarchy show about a room."""

    room_id: str
    num_joined_members: int
    name: str | None = None
    topic: str | None = None
    avatar_url: str | None = None
    canonical_alias: str | None = None
    join_rule: str | None = None
    history_visibility: str | None = None
    guest_access: str | None = None
    room_type: str | None = None
    room_version: str | None = None
    encryption: str | None = None
    allowed_room_ids: tuple[str, ...] = ()
    # False when the create event says `m.federate: false` (local users only).
    federate: bool = True
    # m.space.child events (not redacted, with a `via` list), by state key.
    children: tuple[Event, ...] = field(default=(), repr=False)

    @property
    def world_readable(self) -> bool:
        return self.history_visibility == "world_readable"

    @property
    def guest_can_join(self) -> bool:
        return self.guest_access == "can_join"

    def public_entry(self) -> dict[str, Any]:
        """A PublishedRoomsChunk (public_rooms_chunk.yaml): absent values are left out."""
        entry: dict[str, Any] = {
            "room_id": self.room_id,
            "num_joined_members": self.num_joined_members,
            "world_readable": self.world_readable,
            "guest_can_join": self.guest_can_join,
        }
        for key in ("name", "topic", "avatar_url", "canonical_alias", "join_rule", "room_type"):
            value = getattr(self, key)
            if value is not None:
                entry[key] = value
        return entry

    def search_text(self) -> str:
        return "\n".join(v for v in (self.name, self.topic, self.canonical_alias) if v).casefold()


def _nonempty_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def plain_topic(content: Mapping[str, Any]) -> str | None:
    """The text/plain topic: `topic`, else a text/plain (or untyped) `m.topic` representation."""
    topic = _nonempty_str(content.get("topic"))
    if topic is not None:
        return topic
    block = content.get("m.topic")
    texts = block.get("m.text") if isinstance(block, Mapping) else None
    if isinstance(texts, list):
        for text in texts:
            if isinstance(text, Mapping) and text.get("mimetype", "text/plain") == "text/plain":
                body = _nonempty_str(text.get("body"))
                if body is not None:
                    return body
    return None


def summarize(room_id: str, state: Mapping[str, Mapping[str, Any]], joined: int) -> RoomSummary:
    """Build a summary from the (possibly redacted) contents of the SUMMARY_TYPES events."""
    create = state.get(c.CREATE, {})
    join_rules = state.get(c.JOIN_RULES, {})
    allowed: list[str] = []
    allow = join_rules.get("allow")
    if isinstance(allow, list):
        for condition in allow:
            if isinstance(condition, Mapping) and condition.get("type") == "m.room_membership":
                target = condition.get("room_id")
                if isinstance(target, str):
                    allowed.append(target)
    avatar = _nonempty_str(state.get("m.room.avatar", {}).get("url"))
    return RoomSummary(
        room_id=room_id,
        num_joined_members=joined,
        name=_nonempty_str(state.get("m.room.name", {}).get("name")),
        topic=plain_topic(state.get("m.room.topic", {})),
        avatar_url=avatar,
        canonical_alias=_nonempty_str(state.get(CANONICAL_ALIAS, {}).get("alias")),
        join_rule=_nonempty_str(join_rules.get("join_rule")),
        history_visibility=_nonempty_str(state.get(c.HISTORY_VISIBILITY, {}).get("history_visibility")),
        guest_access=_nonempty_str(state.get("m.room.guest_access", {}).get("guest_access")),
        room_type=_nonempty_str(create.get("type")),
        room_version=_nonempty_str(create.get("room_version")) or ("1" if create else None),
        encryption=_nonempty_str(state.get("m.room.encryption", {}).get("algorithm")),
        allowed_room_ids=tuple(allowed),
        federate=create.get("m.federate", True) is not False,
    )


def _content(stored: StoredEvent) -> Mapping[str, Any]:
    if stored.redacted_by is None:
        return stored.event.content
    pruned = prune_event_dict(stored.event.room_version, stored.event.pdu)
    content: Mapping[str, Any] = pruned.get("content", {})
    return content


# -- /publicRooms pagination tokens -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicRoomsToken:
    """A position in the listing (joined members, room id) and the direction to read from it."""

    joined: int
    room_id: str
    forward: bool

    def encode(self) -> str:
        raw = hjson.dumps([self.joined, self.room_id, 1 if self.forward else 0])
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str) -> PublicRoomsToken:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            joined, room_id, forward = hjson.loads(raw)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token") from exc
        if not isinstance(joined, int) or not isinstance(room_id, str) or forward not in (0, 1):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token")
        return cls(joined, room_id, bool(forward))


def _sort_key(summary: RoomSummary) -> tuple[int, str]:
    return (summary.num_joined_members, summary.room_id)


def paginate(rooms: Sequence[RoomSummary], limit: int, since: str | None) -> dict[str, Any]:
    """One page of `rooms` (sorted largest first) in Synapse's keyset scheme: `next_batch` reads on
    after the page's last room, `prev_batch` back from its first."""
    ordered = sorted(rooms, key=_sort_key, reverse=True)
    token = PublicRoomsToken.decode(since) if since else None
    if token is None or token.forward:
        if token is None:
            candidates = ordered
        else:
            bound = (token.joined, token.room_id)
            candidates = [r for r in ordered if _sort_key(r) < bound]
        page = candidates[:limit]
    else:
        bound = (token.joined, token.room_id)
        candidates = [r for r in ordered if _sort_key(r) > bound]
        page = candidates[max(0, len(candidates) - limit) :]
    more = len(candidates) > len(page)

    response: dict[str, Any] = {"chunk": [r.public_entry() for r in page]}
    first, last = (page[0], page[-1]) if page else (None, None)
    forward = token is None or token.forward
    if token is not None and forward:
        # A token means earlier results exist; with an empty page read back from the end.
        anchor = (first.num_joined_members, first.room_id) if first else (0, "")
        response["prev_batch"] = PublicRoomsToken(*anchor, forward=False).encode()
    if first is not None and last is not None:
        if forward:
            if more:
                response["next_batch"] = PublicRoomsToken(*_sort_key(last), forward=True).encode()
        else:
            response["next_batch"] = PublicRoomsToken(*_sort_key(last), forward=True).encode()
            if more:
                response["prev_batch"] = PublicRoomsToken(*_sort_key(first), forward=False).encode()
    return response


@dataclass(frozen=True, slots=True)
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    # None: any room type; else the allowed types (None in the list: rooms without a type).
    room_types: tuple[str | None, ...] | None = None
    # A third-party network's list (appservice lists; none exist yet), instead of the main list.
    third_party_instance_id: str | None = None
    # Another server asks (federation /publicRooms): rooms with `m.federate: false` are left out.
    federated_only: bool = False

    def matches(self, summary: RoomSummary) -> bool:
        if self.federated_only and not summary.federate:
            return False
        if self.room_types is not None and summary.room_type not in self.room_types:
            return False
        if self.search_term:
            return self.search_term.casefold() in summary.search_text()
        return True


def _check_alias_grammar(alias: str) -> None:
    if not ids.is_valid_room_alias(alias):
        raise MatrixError(400, "M_INVALID_PARAM", "Room alias invalid")
    localpart = ids.localpart_of(alias)
    if any(ch in string.whitespace or ord(ch) < 0x20 for ch in localpart):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid characters in room alias")


class DirectoryService:
    def __init__(
        self,
        store: DirectoryStore,
        rooms: RoomStore,
        events: EventStore,
        state: CurrentStateCache,
        clock: Any,
        *,
        server_name: str,
        may_create_alias: AliasRule,
        may_publish_room: PublishRule,
        send_state: SendState,
        require_membership_for_aliases: bool = True,
        enable_room_list_search: bool = True,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.events = events
        self.state = state
        self.clock = clock
        self.server_name = server_name
        self.may_create_alias = may_create_alias
        self.may_publish_room = may_publish_room
        self.send_state = send_state
        self.require_membership_for_aliases = require_membership_for_aliases
        self.enable_room_list_search = enable_room_list_search
        # Resolves a remote alias over federation (federation/queries.py); None: 502.
        self.remote_alias: Callable[[str], Awaitable[dict[str, Any]]] | None = None
        # Asks appservices about aliases in their namespaces that do not exist yet (may create them).
        self.unknown_alias_query: Callable[[str], Awaitable[bool]] | None = None
        # Called with the room id after one of its aliases was created or deleted.
        self.alias_changed_hooks: list[Callable[[str], None]] = []

    def _is_local(self, alias: str) -> bool:
        return ids.server_of(alias) == self.server_name

    # -- aliases ---------------------------------------------------------------------------------

    async def room_id_for_alias(self, alias: str) -> str:
        """The one alias resolver (directory lookups, joins, knocks): 400 for a malformed alias,
        404 for an unknown one, and for a remote alias while this server does not federate."""
        _check_alias_grammar(alias)
        if not self._is_local(alias):
            if self.remote_alias is None:
                raise MatrixError(502, "M_UNKNOWN", "Failed to fetch alias: federation is not available")
            remote = await self.remote_alias(alias)
            return str(remote["room_id"])
        found = await self.rooms.get_alias(alias)
        if found is None and self.unknown_alias_query is not None and await self.unknown_alias_query(alias):
            found = await self.rooms.get_alias(alias)  # the appservice created it just now
        if found is None:
            raise not_found(f"Room alias {alias} not found")
        return found[0]

    async def resolve_room_id_or_alias(self, target: str) -> str:
        """A `{roomIdOrAlias}` path parameter as a room id."""
        if target.startswith("#"):
            return await self.room_id_for_alias(target)
        if ids.is_valid_room_id(target):
            return target
        raise MatrixError(400, "M_INVALID_PARAM", f"{target!r} is not a room id or alias")

    async def resolve_alias(self, alias: str) -> dict[str, Any]:
        """getRoomIdByAlias: the room id and servers to join through (this server first)."""
        _check_alias_grammar(alias)
        if not self._is_local(alias) and self.remote_alias is not None:
            return await self.remote_alias(alias)
        room_id = await self.room_id_for_alias(alias)
        others = sorted(s for s in await self.store.list_joined_servers(room_id) if s != self.server_name)
        return {"room_id": room_id, "servers": [self.server_name, *others]}

    async def create_alias(self, requester: Requester, alias: str, room_id: str) -> None:
        """setRoomAlias."""
        _check_alias_grammar(alias)
        if not self._is_local(alias):
            raise MatrixError(400, "M_INVALID_PARAM", "Room alias must be local")
        ids.check_room_id(room_id)
        if await self.rooms.get_room(room_id) is None:
            raise MatrixError(400, "M_UNKNOWN", "Room does not exist")
        user_id = requester.user_id
        # An appservice (its as_token; the namespace was checked by the handler) manages the
        # aliases of its namespace wherever they point: Synapse skips both rules for it.
        appservice = requester.app_service_id is not None and requester.token_hash is None
        if self.require_membership_for_aliases and not requester.is_admin and not appservice:
            member = await self.rooms.get_membership(room_id, user_id)
            if member is None or member.membership != c.JOIN:
                raise forbidden("You must be in the room to create an alias for it")
        if not appservice and not self.may_create_alias(user_id, room_id, alias):
            raise forbidden("Not allowed to create alias")
        if not await self.store.insert_alias(alias, room_id, user_id, self.clock.time_ms()):
            raise MatrixError(409, "M_UNKNOWN", f"Room alias {alias} already exists")
        logger.info("%s created alias %s for %s", user_id, alias, room_id)
        for hook in self.alias_changed_hooks:
            hook(room_id)

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        """deleteRoomAlias: for the alias' creator, server admins and room moderators."""
        _check_alias_grammar(alias)
        found = await self.rooms.get_alias(alias) if self._is_local(alias) else None
        if found is None:
            raise not_found(f"Room alias {alias} not found")
        room_id, creator = found
        user_id = requester.user_id
        if creator != user_id and not requester.is_admin:
            await self._check_room_moderator(
                user_id, room_id, "You don't have permission to delete the alias."
            )
        if await self.store.delete_alias(alias) is None:
            raise not_found(f"Room alias {alias} not found")  # deleted concurrently
        logger.info("%s deleted alias %s of %s", user_id, alias, room_id)
        for hook in self.alias_changed_hooks:
            hook(room_id)
        await self._drop_from_canonical_alias(user_id, room_id, alias)

    async def _check_room_moderator(self, user_id: str, room_id: str, message: str) -> None:
        """Synapse's "may change the room list" test: joined and able to send the canonical alias."""
        snapshot = await self.state.get(room_id)
        if snapshot is None or snapshot.membership(user_id) != c.JOIN:
            raise forbidden(f"User {user_id} not in room {room_id}")
        if not can_send(user_id, CANONICAL_ALIAS, "", snapshot.state):
            raise forbidden(message)

    async def _drop_from_canonical_alias(self, user_id: str, room_id: str, alias: str) -> None:
        """Remove a deleted alias from m.room.canonical_alias; best effort, as the spec recommends."""
        snapshot = await self.state.get(room_id)
        event = snapshot.get(CANONICAL_ALIAS) if snapshot is not None else None
        if event is None:
            return
        content = dict(event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            remaining = [a for a in alt if a != alias]
            if remaining:
                content["alt_aliases"] = remaining
            else:
                del content["alt_aliases"]
            changed = True
        if not changed:
            return
        try:
            await self.send_state(user_id, room_id, CANONICAL_ALIAS, "", content)
        except MatrixError as exc:
            logger.info(
                "could not update %s of %s after deleting %s: %s", CANONICAL_ALIAS, room_id, alias, exc
            )

    async def local_aliases(self, requester: Requester, room_id: str) -> list[str]:
        """getLocalAliases: for members, anyone when world-readable, and server admins."""
        ids.check_room_id(room_id)
        if not requester.is_admin:
            snapshot = await self.state.get(room_id)
            membership = snapshot.membership(requester.user_id) if snapshot is not None else None
            world_readable = (
                snapshot is not None
                and snapshot.content_of(c.HISTORY_VISIBILITY).get("history_visibility") == "world_readable"
            )
            if membership != c.JOIN and not world_readable:
                raise forbidden(f"User {requester.user_id} not in room {room_id}")
        return await self.rooms.list_aliases(room_id)

    # -- directory visibility --------------------------------------------------------------------

    async def get_visibility(self, room_id: str) -> str:
        ids.check_room_id(room_id)
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        return "public" if room.is_public else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        ids.check_room_id(room_id)
        user_id = requester.user_id
        if requester.is_guest:
            raise forbidden("Guests cannot edit the published room list")
        if visibility == "public" and not self.enable_room_list_search:
            raise forbidden("This user is not permitted to publish rooms to the room list")
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        if not requester.is_admin:
            await self._check_room_moderator(
                user_id,
                room_id,
                "This server requires you to be a moderator in the room to edit its room list entry",
            )
        if visibility == "public":
            aliases = list(await self.rooms.list_aliases(room_id))
            snapshot = await self.state.get(room_id)
            canonical = snapshot.content_of(CANONICAL_ALIAS).get("alias") if snapshot else None
            if isinstance(canonical, str) and canonical:
                aliases.append(canonical)
            if not self.may_publish_room(user_id, room_id, aliases):
                raise forbidden("Not allowed to publish room")
        if room.is_public != (visibility == "public"):
            await self.rooms.set_public(room_id, visibility == "public")
            logger.info("%s set directory visibility of %s to %s", user_id, room_id, visibility)

    # -- summaries -------------------------------------------------------------------------------

    async def summaries(
        self, room_ids: Sequence[str], *, with_children: bool = False
    ) -> dict[str, RoomSummary]:
        """Summaries of the rooms this server has, from a few current state events each."""
        if not room_ids:
            return {}
        refs = await self.store.list_state(room_ids, SUMMARY_TYPES, (SPACE_CHILD,) if with_children else ())
        counts = await self.store.count_joined_members(room_ids)
        stored = await self.events.get_events([r.event_id for r in refs])
        contents: dict[str, dict[str, Mapping[str, Any]]] = {}
        children: dict[str, list[Event]] = {}
        for ref in refs:
            found = stored.get(ref.event_id)
            if found is None:
                continue
            if ref.type == SPACE_CHILD and ref.state_key and _is_valid_child(ref, found):
                children.setdefault(ref.room_id, []).append(found.event)
            elif ref.state_key == "":
                contents.setdefault(ref.room_id, {})[ref.type] = _content(found)
        result = {}
        for room_id, state in contents.items():
            if c.CREATE not in state:
                continue  # a room we only know of (invite, outlier): no summary of our own
            summary = summarize(room_id, state, counts.get(room_id, 0))
            kids = sorted(children.get(room_id, []), key=lambda e: e.state_key or "")
            if kids:
                summary = replace(summary, children=tuple(kids))
            result[room_id] = summary
        return result

    # -- the published room list -----------------------------------------------------------------

    async def list_public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        if not self.enable_room_list_search:
            return {"chunk": [], "total_room_count_estimate": 0}
        if query.third_party_instance_id is not None:
            rooms: list[RoomSummary] = []  # no appservice publishes a network list (yet)
        else:
            room_ids = await self.rooms.list_public_room_ids()
            rooms = [s for s in (await self.summaries(room_ids)).values() if _listed(s) and query.matches(s)]
        limit = MAX_PUBLIC_ROOMS if not query.limit or query.limit > MAX_PUBLIC_ROOMS else query.limit
        response = paginate(rooms, limit, query.since)
        response["total_room_count_estimate"] = len(rooms)
        return response


def _listed(summary: RoomSummary) -> bool:
    """Synapse's listing filter: published rooms people can join, knock on or read, with members."""
    if summary.num_joined_members <= 0:
        return False
    return summary.join_rule in LISTED_JOIN_RULES or summary.world_readable


def _is_valid_child(ref: StateRef, stored: StoredEvent) -> bool:
    """An m.space.child link counts while its content has a non-empty `via` list."""
    if stored.redacted_by is not None:
        return False
    via = stored.event.content.get("via")
    if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
        return False
    return ids.is_valid_room_id(ref.state_key)
