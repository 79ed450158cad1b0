"""The sliding sync request body, validated (the shape Element X sends and Synapse accepts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.core.errors import MatrixError

MAX_TIMELINE_LIMIT = 1000  # Synapse's bound
MAX_RANGE_END = 2**31
MAX_CONN_ID = 255

StateWant = tuple[str, str]


def _bad(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def _bool(value: Any, name: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _bad(f"{name} must be a boolean")
    return value


def _str_list(value: Any, name: str, allow_null: bool = False) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, str) or (allow_null and v is None) for v in value
    ):
        raise _bad(f"{name} must be a list of strings")
    return value


@dataclass(frozen=True, slots=True)
class RoomParams:
    """What to send of each room: `required_state` pairs and `timeline_limit`."""

    required_state: tuple[StateWant, ...]
    timeline_limit: int

    @classmethod
    def parse(cls, body: Any, where: str) -> RoomParams:
        if not isinstance(body, dict):
            raise _bad(f"{where} must be an object")
        limit = body.get("timeline_limit", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_TIMELINE_LIMIT:
            raise _bad(f"{where}.timeline_limit must be an integer in 0..{MAX_TIMELINE_LIMIT}")
        raw = body.get("required_state", [])
        if not isinstance(raw, list):
            raise _bad(f"{where}.required_state must be a list")
        wants: list[StateWant] = []
        for pair in raw:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                raise _bad(f"{where}.required_state entries must be [type, state_key]")
            wants.append((pair[0], pair[1]))
        return cls(tuple(wants), limit)


@dataclass(frozen=True, slots=True)
class ListFilters:
    is_dm: bool | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] | None = None
    spaces: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, body: Any, where: str) -> ListFilters:
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise _bad(f"{where}.filters must be an object")
        room_types = _str_list(body.get("room_types"), "room_types", allow_null=True)
        not_room_types = _str_list(body.get("not_room_types"), "not_room_types", allow_null=True)
        spaces = _str_list(body.get("spaces"), "spaces")
        # tags / not_tags / room_name_like are accepted and ignored, as Synapse does for the latter.
        for key in ("tags", "not_tags"):
            _str_list(body.get(key), key)
        return cls(
            is_dm=_bool(body.get("is_dm"), "is_dm"),
            is_encrypted=_bool(body.get("is_encrypted"), "is_encrypted"),
            is_invite=_bool(body.get("is_invite"), "is_invite"),
            room_types=tuple(room_types) if room_types is not None else None,
            not_room_types=tuple(not_room_types) if not_room_types is not None else None,
            spaces=tuple(spaces) if spaces is not None else None,
        )


@dataclass(frozen=True, slots=True)
class ListRequest:
    params: RoomParams
    ranges: tuple[tuple[int, int], ...] | None
    filters: ListFilters

    @classmethod
    def parse(cls, body: Any, name: str) -> ListRequest:
        where = f"lists.{name}"
        params = RoomParams.parse(body, where)
        raw = body.get("ranges")
        ranges: tuple[tuple[int, int], ...] | None = None
        if raw is not None:
            if not isinstance(raw, list):
                raise _bad(f"{where}.ranges must be a list")
            out = []
            for r in raw:
                if not (
                    isinstance(r, list)
                    and len(r) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
                    and 0 <= r[0] <= r[1] <= MAX_RANGE_END
                ):
                    raise _bad(f"{where}.ranges entries must be [start, end] with 0 <= start <= end")
                out.append((r[0], r[1]))
            ranges = tuple(out)
        return cls(params, ranges, ListFilters.parse(body.get("filters"), where))


@dataclass(frozen=True, slots=True)
class ExtensionRequest:
    enabled: bool
    lists: tuple[str, ...] = ("*",)
    rooms: tuple[str, ...] = ("*",)
    since: str | None = None
    limit: int = 100

    @classmethod
    def parse(cls, body: Any, name: str) -> ExtensionRequest | None:
        if body is None:
            return None
        if not isinstance(body, dict):
            raise _bad(f"extensions.{name} must be an object")
        enabled = _bool(body.get("enabled"), "enabled") or False
        lists = _str_list(body.get("lists"), "lists")
        rooms = _str_list(body.get("rooms"), "rooms")
        since = body.get("since")
        if since is not None and not (
            isinstance(since, str) and since.isascii() and since.isdigit() and len(since) <= 19
        ):
            raise _bad(f"extensions.{name}.since is invalid (should look like an int)")
        limit = body.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise _bad(f"extensions.{name}.limit must be a non-negative integer")
        return cls(
            enabled,
            tuple(lists) if lists is not None else ("*",),
            tuple(rooms) if rooms is not None else ("*",),
            since,
            limit,
        )

    def covers(self, list_names: set[str], room_id: str, subscribed: bool) -> bool:
        """Does this extension apply to a room in these lists (or subscribed to)?"""
        if subscribed and ("*" in self.rooms or room_id in self.rooms):
            return True
        return ("*" in self.lists and bool(list_names)) or any(n in self.lists for n in list_names)


EXTENSIONS = ("to_device", "e2ee", "account_data", "receipts", "typing")


@dataclass(slots=True)
class SlidingSyncRequest:
    user_id: str
    device_id: str | None
    conn_id: str
    pos: str | None
    timeout_ms: int
    lists: dict[str, ListRequest] = field(default_factory=dict)
    subscriptions: dict[str, RoomParams] = field(default_factory=dict)
    extensions: dict[str, ExtensionRequest] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, user_id: str, device_id: str | None, body: Any, pos: str | None, timeout_ms: int
    ) -> SlidingSyncRequest:
        if not isinstance(body, dict):
            raise _bad("The body must be an object")
        conn_id = body.get("conn_id") or ""
        if not isinstance(conn_id, str) or len(conn_id) > MAX_CONN_ID:
            raise _bad(f"conn_id must be a string of at most {MAX_CONN_ID} characters")
        lists_raw = body.get("lists") or {}
        if not isinstance(lists_raw, dict):
            raise _bad("lists must be an object")
        subs_raw = body.get("room_subscriptions") or {}
        if not isinstance(subs_raw, dict):
            raise _bad("room_subscriptions must be an object")
        ext_raw = body.get("extensions") or {}
        if not isinstance(ext_raw, dict):
            raise _bad("extensions must be an object")
        extensions = {}
        for name in EXTENSIONS:
            ext = ExtensionRequest.parse(ext_raw.get(name), name)
            if ext is not None and ext.enabled:
                extensions[name] = ext
        return cls(
            user_id=user_id,
            device_id=device_id,
            conn_id=conn_id,
            pos=pos,
            timeout_ms=timeout_ms,
            lists={name: ListRequest.parse(value, name) for name, value in lists_raw.items()},
            subscriptions={
                room_id: RoomParams.parse(value, f"room_subscriptions.{room_id}")
                for room_id, value in subs_raw.items()
            },
            extensions=extensions,
        )
