"""The filter model (spec: Client-Server API, "Filtering"; ``definitions/sync_filter.yaml``).

Pure code, used by ``/sync``, ``/messages``, ``/context`` and ``/search``:

* :func:`parse_filter` turns a client's JSON into a :class:`Filter` (frozen, hashable), raising
  ``MatrixError(400, M_BAD_JSON)`` when it breaks the spec schema; :func:`parse_room_event_filter`
  does the same for the bare ``RoomEventFilter`` taken by ``/messages``, ``/context`` and ``/search``.
* :meth:`EventFilter.matches` / :meth:`RoomEventFilter.matches_event` decide per event. They are on
  the ``/sync`` hot path, so every pattern is compiled once at construction (exact names in a set,
  ``prefix*`` as a ``str.startswith`` tuple, anything else as one regex) and a filter without
  constraints answers ``True`` without looking at the event.
* :func:`apply_event_fields` implements ``event_fields`` (dot-separated paths with ``\\.`` escapes).
* :func:`parse_filter_param` tells an inline JSON ``filter`` query parameter from a filter id.

Deliberate leniencies (each also what Synapse accepts, so real clients keep working):
``limit: 0`` is accepted (bots commonly ask for ``{"room": {"timeline": {"limit": 0}}}`` to skip
history on their first sync), integral floats such as ``10.0`` count as integers, ``null`` counts as
absent, and unknown keys are ignored for forward compatibility.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypeVar

from homeserver.core import json as mjson
from homeserver.core.errors import MatrixError
from homeserver.core.paths import split_path

__all__ = [
    "DEFAULT_FILTER",
    "EventFilter",
    "EventLike",
    "Filter",
    "RoomEventFilter",
    "RoomFilter",
    "apply_event_fields",
    "parse_event_filter",
    "parse_filter",
    "parse_filter_param",
    "parse_room_event_filter",
]

EventFormat = Literal["client", "federation"]

_EMPTY: Mapping[str, Any] = {}

T = TypeVar("T")


class EventLike(Protocol):
    """What :meth:`RoomEventFilter.matches_event` reads from an event object (``events.event.Event``)."""

    @property
    def type(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def room_id(self) -> str: ...
    @property
    def content(self) -> Mapping[str, Any]: ...


_E = TypeVar("_E", bound="Mapping[str, Any] | EventLike")

# ---------------------------------------------------------------------------------------------------
# Pattern matching


class _PatternSet:
    """A compiled list of event-type patterns where ``*`` matches any run of characters (also empty).

    Every other character is literal. Exact names go to a set, ``prefix*`` to a tuple for
    ``str.startswith`` and the rest to one anchored regex, so the common cases never touch ``re``.
    """

    __slots__ = ("_exact", "_prefixes", "_regex", "match_all")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        regex_parts: list[str] = []
        match_all = False
        for pattern in patterns:
            star = pattern.find("*")
            if star < 0:
                exact.add(pattern)
            elif not pattern.strip("*"):
                match_all = True
            elif star == len(pattern) - 1:
                prefixes.append(pattern[:-1])
            else:
                regex_parts.append(".*".join(re.escape(piece) for piece in pattern.split("*")))
        self.match_all = match_all
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)
        self._regex = re.compile("|".join(regex_parts), re.DOTALL) if regex_parts else None

    def __call__(self, value: str) -> bool:
        if self.match_all or value in self._exact:
            return True
        if self._prefixes and value.startswith(self._prefixes):
            return True
        regex = self._regex
        return regex is not None and regex.fullmatch(value) is not None


def _as_tuple(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return value if value is None or isinstance(value, tuple) else tuple(value)


# ---------------------------------------------------------------------------------------------------
# Filter dataclasses


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``EventFilter``: used for ``presence`` and top-level ``account_data``.

    ``None`` lists mean "no constraint"; an empty ``types``/``senders`` list matches nothing; a value
    matched by ``not_types``/``not_senders`` is excluded even if ``types``/``senders`` lists it.
    Lists given as Python lists are stored as tuples, so filters are hashable (usable as cache keys).
    """

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] | None = None
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] | None = None

    # Precomputed at construction; not part of equality, hashing or repr.
    _types_m: _PatternSet | None = field(init=False, repr=False, compare=False, default=None)
    _not_types_m: _PatternSet | None = field(init=False, repr=False, compare=False, default=None)
    _senders_s: frozenset[str] | None = field(init=False, repr=False, compare=False, default=None)
    _not_senders_s: frozenset[str] | None = field(init=False, repr=False, compare=False, default=None)
    _unconstrained: bool = field(init=False, repr=False, compare=False, default=True)
    _never: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        _init_event_filter(self)

    # -- hot path ---------------------------------------------------------------------------------

    def matches(self, event_type: str, sender: str) -> bool:
        """Whether an event (or presence update, or account data item) of this type/sender passes."""
        if self._unconstrained:
            return True
        if self._never:
            return False
        return self._check_type_sender(event_type, sender)

    def _check_type_sender(self, event_type: str, sender: str) -> bool:
        not_types = self._not_types_m
        if not_types is not None and not_types(event_type):
            return False
        not_senders = self._not_senders_s
        if not_senders is not None and sender in not_senders:
            return False
        types = self._types_m
        if types is not None and not types(event_type):
            return False
        senders = self._senders_s
        return senders is None or sender in senders

    # -- helpers ----------------------------------------------------------------------------------

    @property
    def is_unconstrained(self) -> bool:
        """True when the filter lets every event through (``limit`` aside)."""
        return self._unconstrained

    @property
    def filters_all_types(self) -> bool:
        """True when no event type can pass (``types: []`` or a ``*`` in ``not_types``)."""
        return self.types == () or (self._not_types_m is not None and self._not_types_m.match_all)

    @property
    def filters_all_senders(self) -> bool:
        return self.senders == ()

    @property
    def blocks_all(self) -> bool:
        """True when nothing can pass; callers can skip fetching this section altogether."""
        return self._never

    def effective_limit(self, default: int, maximum: int) -> int:
        """``limit`` if the client gave one, else ``default``; never above ``maximum``."""
        return min(default if self.limit is None else self.limit, maximum)

    def filter_types_senders(self, items: Iterable[T], key: Callable[[T], tuple[str, str]]) -> list[T]:
        """Keep the items for which ``key(item) -> (event_type, sender)`` passes :meth:`matches`."""
        if self._unconstrained:
            return list(items)
        if self._never:
            return []
        check = self._check_type_sender
        return [item for item in items if check(*key(item))]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.limit is not None:
            out["limit"] = self.limit
        for name in ("types", "not_types", "senders", "not_senders"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value)
        return out


def _init_event_filter(f: EventFilter) -> None:
    setattr_ = object.__setattr__
    for name in ("types", "not_types", "senders", "not_senders"):
        setattr_(f, name, _as_tuple(getattr(f, name)))

    types_m = None
    if f.types is not None:
        types_m = _PatternSet(f.types)
        if types_m.match_all:  # ["*"] or similar: no constraint at all
            types_m = None
    not_types_m = _PatternSet(f.not_types) if f.not_types else None
    senders_s = frozenset(f.senders) if f.senders is not None else None
    not_senders_s = frozenset(f.not_senders) if f.not_senders else None

    setattr_(f, "_types_m", types_m)
    setattr_(f, "_not_types_m", not_types_m)
    setattr_(f, "_senders_s", senders_s)
    setattr_(f, "_not_senders_s", not_senders_s)
    setattr_(
        f,
        "_unconstrained",
        types_m is None and not_types_m is None and senders_s is None and not_senders_s is None,
    )
    setattr_(
        f,
        "_never",
        f.types == () or f.senders == () or (not_types_m is not None and not_types_m.match_all),
    )


@dataclass(frozen=True, slots=True)
class RoomEventFilter(EventFilter):
    """``RoomEventFilter``: ``room.timeline``/``state``/``ephemeral``/``account_data`` in a sync filter,
    and the ``filter`` of ``/messages``, ``/context`` and ``/search``."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] | None = None
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    _rooms_s: frozenset[str] | None = field(init=False, repr=False, compare=False, default=None)
    _not_rooms_s: frozenset[str] | None = field(init=False, repr=False, compare=False, default=None)
    _event_trivial: bool = field(init=False, repr=False, compare=False, default=True)

    def __post_init__(self) -> None:
        _init_event_filter(self)
        setattr_ = object.__setattr__
        setattr_(self, "rooms", _as_tuple(self.rooms))
        setattr_(self, "not_rooms", _as_tuple(self.not_rooms))
        rooms_s = frozenset(self.rooms) if self.rooms is not None else None
        not_rooms_s = frozenset(self.not_rooms) if self.not_rooms else None
        setattr_(self, "_rooms_s", rooms_s)
        setattr_(self, "_not_rooms_s", not_rooms_s)
        setattr_(
            self,
            "_event_trivial",
            self._unconstrained and rooms_s is None and not_rooms_s is None and self.contains_url is None,
        )

    # -- hot path ---------------------------------------------------------------------------------

    def room_allowed(self, room_id: str) -> bool:
        not_rooms = self._not_rooms_s
        if not_rooms is not None and room_id in not_rooms:
            return False
        rooms = self._rooms_s
        return rooms is None or room_id in rooms

    def matches_event(self, event: Mapping[str, Any] | EventLike, room_id: str | None = None) -> bool:
        """Whether an event passes: type, sender, room and ``contains_url``.

        ``event`` is a PDU or client-format dict (or anything with ``type``/``sender``/``room_id``/
        ``content`` attributes, such as ``events.event.Event``). ``room_id`` overrides the event's
        own, for items that carry none (ephemeral events, room account data); when neither is
        known the room constraints are skipped (the caller has already picked the room). Without a
        ``sender``, ``content.user_id`` is used, as for old-style presence; failing that, ``""``.
        """
        if self._event_trivial:
            return True
        if self._never:
            return False
        if type(event) is dict or isinstance(event, Mapping):
            ev_type = event.get("type")
            sender = event.get("sender")
            content = event.get("content")
            if room_id is None:
                room_id = event.get("room_id")
        else:
            ev_type = event.type
            sender = event.sender
            content = event.content
            if room_id is None:
                room_id = event.room_id
        if type(content) is not dict and not isinstance(content, Mapping):
            content = _EMPTY

        if isinstance(room_id, str) and not self.room_allowed(room_id):
            return False

        if not self._unconstrained:
            if not isinstance(sender, str) or not sender:
                user_id = content.get("user_id")
                sender = user_id if isinstance(user_id, str) else ""
            if not self._check_type_sender(ev_type if isinstance(ev_type, str) else "", sender):
                return False

        contains_url = self.contains_url
        if contains_url is not None and isinstance(content.get("url"), str) is not contains_url:
            return False
        return True

    def filter_events(self, events: Iterable[_E], room_id: str | None = None) -> list[_E]:
        """The events (dicts or event objects) that pass :meth:`matches_event`, in order."""
        if self._event_trivial:
            return list(events)
        if self._never:
            return []
        check = self.matches_event
        return [ev for ev in events if check(ev, room_id)]

    # -- helpers ----------------------------------------------------------------------------------

    @property
    def is_unconstrained(self) -> bool:
        return self._event_trivial

    @property
    def filters_all_rooms(self) -> bool:
        return self.rooms == ()

    @property
    def blocks_all(self) -> bool:
        return self._never or self.rooms == ()

    def to_json(self) -> dict[str, Any]:
        out = EventFilter.to_json(self)
        if self.rooms is not None:
            out["rooms"] = list(self.rooms)
        if self.not_rooms is not None:
            out["not_rooms"] = list(self.not_rooms)
        if self.contains_url is not None:
            out["contains_url"] = self.contains_url
        for name in ("lazy_load_members", "include_redundant_members", "unread_thread_notifications"):
            if getattr(self, name):
                out[name] = True
        return out


_EMPTY_ROOM_EVENT_FILTER: Final = RoomEventFilter()
_EMPTY_EVENT_FILTER: Final = EventFilter()


@dataclass(frozen=True, slots=True)
class RoomFilter:
    """``room`` of a sync filter. ``rooms``/``not_rooms`` apply before the per-section filters."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] | None = None
    ephemeral: RoomEventFilter = _EMPTY_ROOM_EVENT_FILTER
    include_leave: bool = False
    state: RoomEventFilter = _EMPTY_ROOM_EVENT_FILTER
    timeline: RoomEventFilter = _EMPTY_ROOM_EVENT_FILTER
    account_data: RoomEventFilter = _EMPTY_ROOM_EVENT_FILTER

    _rooms_s: frozenset[str] | None = field(init=False, repr=False, compare=False, default=None)
    _not_rooms_s: frozenset[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "rooms", _as_tuple(self.rooms))
        setattr_(self, "not_rooms", _as_tuple(self.not_rooms))
        setattr_(self, "_rooms_s", frozenset(self.rooms) if self.rooms is not None else None)
        setattr_(self, "_not_rooms_s", frozenset(self.not_rooms) if self.not_rooms else None)

    def room_allowed(self, room_id: str) -> bool:
        """Whether the room may appear in the response at all (``not_rooms`` wins over ``rooms``)."""
        not_rooms = self._not_rooms_s
        if not_rooms is not None and room_id in not_rooms:
            return False
        rooms = self._rooms_s
        return rooms is None or room_id in rooms

    def filter_room_ids(self, room_ids: Iterable[str]) -> list[str]:
        """The allowed room ids, in the given order."""
        if self._rooms_s is None and self._not_rooms_s is None:
            return list(room_ids)
        allowed = self.room_allowed
        return [room_id for room_id in room_ids if allowed(room_id)]

    @property
    def blocks_all_rooms(self) -> bool:
        return self.rooms == ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.rooms is not None:
            out["rooms"] = list(self.rooms)
        if self.not_rooms is not None:
            out["not_rooms"] = list(self.not_rooms)
        if self.include_leave:
            out["include_leave"] = True
        for name in ("ephemeral", "state", "timeline", "account_data"):
            sub = getattr(self, name).to_json()
            if sub:
                out[name] = sub
        return out


_EMPTY_ROOM_FILTER: Final = RoomFilter()


@dataclass(frozen=True, slots=True)
class Filter:
    """A whole sync filter (``POST /user/{userId}/filter`` body, or inline ``/sync?filter={...}``)."""

    event_fields: tuple[str, ...] | None = None
    event_format: EventFormat = "client"
    presence: EventFilter = _EMPTY_EVENT_FILTER
    account_data: EventFilter = _EMPTY_EVENT_FILTER
    room: RoomFilter = _EMPTY_ROOM_FILTER

    _field_paths: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        fields = _as_tuple(self.event_fields)
        object.__setattr__(self, "event_fields", fields)
        object.__setattr__(self, "_field_paths", tuple(split_path(f) for f in fields or ()))

    # Flags the sync code asks for. Clients set lazy-loading on ``state`` (matrix-js-sdk, Synapse)
    # or on ``timeline``; either enables it.

    @property
    def include_leave(self) -> bool:
        return self.room.include_leave

    @property
    def lazy_load_members(self) -> bool:
        return self.room.state.lazy_load_members or self.room.timeline.lazy_load_members

    @property
    def include_redundant_members(self) -> bool:
        room = self.room
        return (room.state.lazy_load_members and room.state.include_redundant_members) or (
            room.timeline.lazy_load_members and room.timeline.include_redundant_members
        )

    @property
    def unread_thread_notifications(self) -> bool:
        return self.room.timeline.unread_thread_notifications or self.room.state.unread_thread_notifications

    def apply_event_fields(self, client_event: dict[str, Any]) -> dict[str, Any]:
        """``event_fields`` applied to one client-format event (unchanged when no fields are set)."""
        paths = self._field_paths
        if not paths:
            return client_event
        return _only_paths(client_event, paths)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.event_fields is not None:
            out["event_fields"] = list(self.event_fields)
        if self.event_format != "client":
            out["event_format"] = self.event_format
        for name in ("presence", "account_data", "room"):
            sub = getattr(self, name).to_json()
            if sub:
                out[name] = sub
        return out


DEFAULT_FILTER: Final = Filter()


# ---------------------------------------------------------------------------------------------------
# event_fields


def apply_event_fields(client_event: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Keep only the listed dot-separated paths of ``client_event``.

    An empty list keeps everything (as Synapse does; the spec lets servers return more fields than
    asked). Paths that do not exist, or that go through a non-object, are skipped. The input is not
    modified; the result's leaf values are shared with it, so treat them as read-only.
    """
    if not fields:
        return dict(client_event)
    return _only_paths(client_event, [split_path(f) for f in fields])


def _only_paths(src: Mapping[str, Any], paths: Iterable[tuple[str, ...]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        _copy_path(src, out, path)
    return out


def _copy_path(src: Mapping[str, Any], dst: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, leaf = path
    node: Mapping[str, Any] = src
    for key in parents:
        child = node.get(key)
        if not isinstance(child, Mapping):
            return
        node = child
    if leaf not in node:
        return
    # Build the output nodes only now, so missing paths leave no empty objects behind.
    src_node: Mapping[str, Any] = src
    dst_node = dst
    for key in parents:
        src_node = src_node[key]
        existing = dst_node.get(key)
        if existing is src_node:  # an earlier, shorter path already copied this whole object
            return
        if existing is None:
            existing = {}
            dst_node[key] = existing
        dst_node = existing
    dst_node[leaf] = node[leaf]


# ---------------------------------------------------------------------------------------------------
# Parsing and validation


def parse_filter_param(value: str) -> dict[str, Any] | None:
    """The ``filter`` query parameter: inline JSON if it starts with ``{`` (returned parsed, to be
    validated with :func:`parse_filter` or :func:`parse_room_event_filter`), else ``None`` meaning
    "this is a filter id, look it up". Undecodable JSON raises ``400 M_NOT_JSON``."""
    if not value.startswith("{"):
        return None
    try:
        obj = mjson.loads(value)
    except ValueError as exc:
        raise MatrixError(400, "M_NOT_JSON", "filter parameter is not valid JSON") from exc
    if not isinstance(obj, dict):  # cannot happen with a leading "{", but keep the contract exact
        raise MatrixError(400, "M_INVALID_PARAM", "filter parameter must be a JSON object")
    # The same limits as request bodies (homeserver/http/routing.py): no U+0000, bounded nesting.
    if "\\u0000" in value and mjson.contains_nul(obj):
        raise MatrixError(400, "M_INVALID_PARAM", "filter parameter must not contain NUL characters")
    if mjson.depth_exceeds(obj):
        raise MatrixError(400, "M_INVALID_PARAM", "filter parameter is nested too deeply")
    return obj


def parse_filter(obj: Any, *, errcode: str = "M_BAD_JSON") -> Filter:
    """Validate a sync filter against the spec schema and build a :class:`Filter`.

    Raises ``MatrixError(400, errcode)`` (``M_BAD_JSON`` by default; pass ``M_INVALID_PARAM`` when the
    filter came from a query parameter) naming the offending field.
    """
    p = _Parser(errcode)
    top = p.obj(obj, "filter")
    raw_format = top.get("event_format")
    event_format: EventFormat
    if raw_format is None or raw_format == "client":
        event_format = "client"
    elif raw_format == "federation":
        event_format = "federation"
    else:
        raise p.error("event_format", "must be 'client' or 'federation'")
    presence = p.event_filter(top.get("presence"), "presence")
    account_data = p.event_filter(top.get("account_data"), "account_data")
    room_obj = top.get("room")
    room = RoomFilter() if room_obj is None else p.room_filter(room_obj, "room")
    return Filter(
        event_fields=p.str_list(top, "event_fields", ""),
        event_format=event_format,
        presence=presence,
        account_data=account_data,
        room=room,
    )


def parse_room_event_filter(obj: Any, *, errcode: str = "M_BAD_JSON") -> RoomEventFilter:
    """Validate a bare ``RoomEventFilter`` (``/messages``, ``/context``, ``/search``)."""
    if obj is None:
        return _EMPTY_ROOM_EVENT_FILTER
    return _Parser(errcode).room_event_filter(obj, "filter")


def parse_event_filter(obj: Any, *, errcode: str = "M_BAD_JSON") -> EventFilter:
    """Validate a bare ``EventFilter``."""
    return _Parser(errcode).event_filter(obj, "filter")


class _Parser:
    __slots__ = ("errcode",)

    def __init__(self, errcode: str) -> None:
        self.errcode = errcode

    def error(self, path: str, msg: str) -> MatrixError:
        return MatrixError(400, self.errcode, f"Invalid filter: {path} {msg}")

    def obj(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, "must be an object")
        return value

    def str_list(
        self, obj: Mapping[str, Any], key: str, base: str, sigil: str = ""
    ) -> tuple[str, ...] | None:
        value = obj.get(key)
        if value is None:
            return None
        path = f"{base}.{key}" if base else key
        if not isinstance(value, list):
            raise self.error(path, "must be an array of strings")
        for item in value:
            if not isinstance(item, str):
                raise self.error(path, "must be an array of strings")
            if sigil and not item.startswith(sigil):
                raise self.error(path, f"entries must start with {sigil!r}")
        return tuple(value)

    def bool_(self, obj: Mapping[str, Any], key: str, base: str) -> bool | None:
        value = obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self.error(f"{base}.{key}", "must be a boolean")

    def limit(self, obj: Mapping[str, Any], base: str) -> int | None:
        value = obj.get("limit")
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.error(f"{base}.limit", "must be a non-negative integer")
        return value

    def event_filter(self, value: Any, path: str) -> EventFilter:
        if value is None:
            return _EMPTY_EVENT_FILTER
        obj = self.obj(value, path)
        return EventFilter(
            limit=self.limit(obj, path),
            types=self.str_list(obj, "types", path),
            not_types=self.str_list(obj, "not_types", path),
            senders=self.str_list(obj, "senders", path, "@"),
            not_senders=self.str_list(obj, "not_senders", path, "@"),
        )

    def room_event_filter(self, value: Any, path: str) -> RoomEventFilter:
        if value is None:
            return _EMPTY_ROOM_EVENT_FILTER
        obj = self.obj(value, path)
        return RoomEventFilter(
            limit=self.limit(obj, path),
            types=self.str_list(obj, "types", path),
            not_types=self.str_list(obj, "not_types", path),
            senders=self.str_list(obj, "senders", path, "@"),
            not_senders=self.str_list(obj, "not_senders", path, "@"),
            rooms=self.str_list(obj, "rooms", path, "!"),
            not_rooms=self.str_list(obj, "not_rooms", path, "!"),
            contains_url=self.bool_(obj, "contains_url", path),
            lazy_load_members=bool(self.bool_(obj, "lazy_load_members", path)),
            include_redundant_members=bool(self.bool_(obj, "include_redundant_members", path)),
            unread_thread_notifications=bool(self.bool_(obj, "unread_thread_notifications", path)),
        )

    def room_filter(self, value: Any, path: str) -> RoomFilter:
        obj = self.obj(value, path)
        return RoomFilter(
            rooms=self.str_list(obj, "rooms", path, "!"),
            not_rooms=self.str_list(obj, "not_rooms", path, "!"),
            include_leave=bool(self.bool_(obj, "include_leave", path)),
            ephemeral=self.room_event_filter(obj.get("ephemeral"), f"{path}.ephemeral"),
            state=self.room_event_filter(obj.get("state"), f"{path}.state"),
            timeline=self.room_event_filter(obj.get("timeline"), f"{path}.timeline"),
            account_data=self.room_event_filter(obj.get("account_data"), f"{path}.account_data"),
        )
