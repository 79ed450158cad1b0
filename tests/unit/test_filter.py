"""Unit tests for the filter model (homeserver/events/filter.py)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from homeserver.core.errors import MatrixError
from homeserver.core.paths import split_path
from homeserver.events.filter import (
    DEFAULT_FILTER,
    EventFilter,
    Filter,
    RoomEventFilter,
    RoomFilter,
    apply_event_fields,
    parse_event_filter,
    parse_filter,
    parse_filter_param,
    parse_room_event_filter,
)

# The example filter from filter.yaml (defineFilter request body / getFilter response).
SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10,
            "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


# --------------------------------------------------------------------------------------------------
# Wildcards in types


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("m.room.message", "m.room.message", True),
        ("m.room.message", "m.room.messages", False),
        ("m.room.message", "m.room.messag", False),
        ("m.room.*", "m.room.message", True),
        ("m.room.*", "m.room.", True),  # * matches the empty string
        ("m.room.*", "m.room", False),
        ("m.room.*", "m.roomx", False),
        ("m.room.message*", "m.room.message", True),
        ("*", "anything.at.all", True),
        ("*", "", True),
        ("**", "x", True),
        ("*.message", "m.room.message", True),
        ("*.message", "m.room.member", False),
        ("m.*.member", "m.room.member", True),
        ("m.*.member", "m.member", False),
        ("m.*.*", "m.a.b", True),
        ("m.*.*", "m.ab", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "acb", False),
        ("a*b*c", "abcd", False),  # anchored at both ends
        # Only * is special: ?, [ ] and regex metacharacters are literal.
        ("m.room.mess?ge", "m.room.message", False),
        ("m.room.mess?ge", "m.room.mess?ge", True),
        ("m.room.[a]*", "m.room.a", False),
        ("m.room.[a]*", "m.room.[a]x", True),
        ("m.room.(x|y)*", "m.room.x", False),
        ("m.room.(x|y)*", "m.room.(x|y)z", True),
        ("m.*", "m.\nnewline", True),
        ("m.room.message", "M.ROOM.MESSAGE", False),  # case-sensitive
    ],
)
def test_type_wildcards(pattern: str, event_type: str, expected: bool) -> None:
    assert EventFilter(types=(pattern,)).matches(event_type, "@a:x") is expected
    # The same pattern in not_types excludes exactly the same events.
    assert EventFilter(not_types=(pattern,)).matches(event_type, "@a:x") is (not expected)


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (("m.room.message", "m.room.*", "x.*.y"), "m.room.topic", True),
        (("m.room.message", "m.room.*", "x.*.y"), "x.foo.y", True),
        (("m.room.message", "m.room.*", "x.*.y"), "x.foo.z", False),
        (("m.receipt", "m.typing"), "m.typing", True),
        (("m.receipt", "m.typing"), "m.presence", False),
        ((), "m.room.message", False),  # types: [] matches nothing
        (None, "m.room.message", True),  # absent: everything
    ],
)
def test_type_lists(patterns: tuple[str, ...] | None, event_type: str, expected: bool) -> None:
    assert EventFilter(types=patterns).matches(event_type, "@a:x") is expected


# --------------------------------------------------------------------------------------------------
# not_* precedence, senders


@pytest.mark.parametrize(
    ("kwargs", "event_type", "sender", "expected"),
    [
        ({}, "m.room.message", "@a:x", True),
        ({"types": ("m.room.*",), "not_types": ("m.room.member",)}, "m.room.member", "@a:x", False),
        ({"types": ("m.room.*",), "not_types": ("m.room.member",)}, "m.room.message", "@a:x", True),
        ({"types": ("m.room.member",), "not_types": ("m.room.*",)}, "m.room.member", "@a:x", False),
        ({"types": ("*",), "not_types": ("*",)}, "m.room.message", "@a:x", False),
        ({"senders": ("@a:x",), "not_senders": ("@a:x",)}, "m.room.message", "@a:x", False),
        ({"senders": ("@a:x", "@b:x")}, "m.room.message", "@b:x", True),
        ({"senders": ("@a:x",)}, "m.room.message", "@b:x", False),
        ({"senders": ()}, "m.room.message", "@a:x", False),
        ({"not_senders": ("@spam:x",)}, "m.room.message", "@spam:x", False),
        ({"not_senders": ("@spam:x",)}, "m.room.message", "@ham:x", True),
        ({"not_senders": ()}, "m.room.message", "@ham:x", True),
        ({"not_types": ()}, "m.room.message", "@a:x", True),
        # senders are not patterns: * is literal there.
        ({"senders": ("@*",)}, "m.room.message", "@a:x", False),
        ({"not_senders": ("*",)}, "m.room.message", "@a:x", True),
        # Both type and sender constraints must hold.
        ({"types": ("m.room.message",), "senders": ("@a:x",)}, "m.room.message", "@b:x", False),
        ({"types": ("m.room.message",), "senders": ("@a:x",)}, "m.room.topic", "@a:x", False),
        ({"types": ("m.room.message",), "senders": ("@a:x",)}, "m.room.message", "@a:x", True),
    ],
)
def test_event_filter_matches(kwargs: dict[str, Any], event_type: str, sender: str, expected: bool) -> None:
    f = EventFilter(**kwargs)
    assert f.matches(event_type, sender) is expected
    # RoomEventFilter behaves the same on type/sender, through both entry points.
    rf = RoomEventFilter(**kwargs)
    assert rf.matches(event_type, sender) is expected
    ev = {"type": event_type, "sender": sender, "room_id": "!r:x", "content": {}}
    assert rf.matches_event(ev) is expected


@pytest.mark.parametrize(
    ("kwargs", "blocks_all"),
    [
        ({}, False),
        ({"types": ()}, True),
        ({"senders": ()}, True),
        ({"not_types": ("*",)}, True),
        ({"not_types": ("m.*",)}, False),
        ({"types": ("*",)}, False),
        ({"not_senders": ("@a:x",)}, False),
    ],
)
def test_blocks_all(kwargs: dict[str, Any], blocks_all: bool) -> None:
    assert EventFilter(**kwargs).blocks_all is blocks_all
    assert RoomEventFilter(**kwargs).blocks_all is blocks_all


def test_unconstrained_and_lists_are_tuples() -> None:
    assert EventFilter().is_unconstrained
    assert EventFilter(types=("*",)).is_unconstrained  # ["*"] is no constraint at all
    assert EventFilter(limit=5).is_unconstrained
    assert not EventFilter(not_types=("m.x",)).is_unconstrained
    assert RoomEventFilter().is_unconstrained
    assert not RoomEventFilter(contains_url=False).is_unconstrained
    assert not RoomEventFilter(rooms=("!a:x",)).is_unconstrained

    f = RoomEventFilter(types=["m.room.*"], rooms=["!a:x"])  # type: ignore[arg-type]
    assert f.types == ("m.room.*",)
    assert f.rooms == ("!a:x",)
    assert hash(f) == hash(RoomEventFilter(types=("m.room.*",), rooms=("!a:x",)))
    assert f == RoomEventFilter(types=("m.room.*",), rooms=("!a:x",))
    assert copy.deepcopy(f).matches("m.room.topic", "@a:x")


# --------------------------------------------------------------------------------------------------
# contains_url


@pytest.mark.parametrize(
    ("contains_url", "content", "expected"),
    [
        (None, {"url": "mxc://x/y"}, True),
        (None, {}, True),
        (True, {"url": "mxc://x/y"}, True),
        (True, {"url": ""}, True),  # a string, even empty
        (True, {}, False),
        (True, {"url": 42}, False),  # not a string
        (True, {"url": None}, False),
        (True, {"url": {"nested": "mxc://x/y"}}, False),
        (True, None, False),  # no content at all
        (True, "not an object", False),
        (False, {"url": "mxc://x/y"}, False),
        (False, {}, True),
        (False, {"url": 42}, True),
        (False, None, True),
    ],
)
def test_contains_url(contains_url: bool | None, content: Any, expected: bool) -> None:
    ev: dict[str, Any] = {"type": "m.room.message", "sender": "@a:x", "room_id": "!r:x"}
    if content is not None:
        ev["content"] = content
    assert RoomEventFilter(contains_url=contains_url).matches_event(ev) is expected


# --------------------------------------------------------------------------------------------------
# rooms / not_rooms


@pytest.mark.parametrize(
    ("rooms", "not_rooms", "room_id", "expected"),
    [
        (None, None, "!a:x", True),
        (("!a:x",), None, "!a:x", True),
        (("!a:x",), None, "!b:x", False),
        ((), None, "!a:x", False),
        (None, ("!a:x",), "!a:x", False),
        (None, ("!a:x",), "!b:x", True),
        (("!a:x",), ("!a:x",), "!a:x", False),  # not_rooms wins
        (("!a:x", "!b:x"), ("!a:x",), "!b:x", True),
        (None, (), "!a:x", True),
    ],
)
def test_rooms_not_rooms(
    rooms: tuple[str, ...] | None, not_rooms: tuple[str, ...] | None, room_id: str, expected: bool
) -> None:
    assert RoomFilter(rooms=rooms, not_rooms=not_rooms).room_allowed(room_id) is expected
    ref = RoomEventFilter(rooms=rooms, not_rooms=not_rooms)
    assert ref.room_allowed(room_id) is expected
    ev = {"type": "m.room.message", "sender": "@a:x", "room_id": room_id, "content": {}}
    assert ref.matches_event(ev) is expected
    # The room can also be given by the caller, for items that carry no room_id (ephemeral, account data).
    assert ref.matches_event({"type": "m.typing", "content": {}}, room_id=room_id) is expected


def test_room_id_argument_overrides_and_unknown_room_skips_room_checks() -> None:
    f = RoomEventFilter(rooms=("!a:x",))
    ev = {"type": "m.room.message", "sender": "@a:x", "room_id": "!b:x", "content": {}}
    assert not f.matches_event(ev)
    assert f.matches_event(ev, room_id="!a:x")
    assert f.matches_event({"type": "m.receipt", "content": {}})  # no room known: rooms not checked


def test_filter_room_ids_keeps_order() -> None:
    rf = RoomFilter(rooms=("!c:x", "!a:x", "!b:x"), not_rooms=("!b:x",))
    assert rf.filter_room_ids(["!a:x", "!b:x", "!c:x", "!d:x"]) == ["!a:x", "!c:x"]
    assert RoomFilter().filter_room_ids(["!z:x", "!a:x"]) == ["!z:x", "!a:x"]
    assert RoomFilter(rooms=()).blocks_all_rooms
    assert not RoomFilter().blocks_all_rooms


# --------------------------------------------------------------------------------------------------
# matches_event details


@dataclass
class _FakeEvent:
    type: str
    sender: str
    room_id: str
    content: Mapping[str, Any] = field(default_factory=dict)


def test_matches_event_accepts_event_objects() -> None:
    f = RoomEventFilter(types=("m.room.message",), rooms=("!a:x",), contains_url=True)
    assert f.matches_event(_FakeEvent("m.room.message", "@a:x", "!a:x", {"url": "mxc://x/y"}))
    assert not f.matches_event(_FakeEvent("m.room.message", "@a:x", "!a:x", {}))
    assert not f.matches_event(_FakeEvent("m.room.message", "@a:x", "!b:x", {"url": "mxc://x/y"}))
    assert not f.matches_event(_FakeEvent("m.room.topic", "@a:x", "!a:x", {"url": "mxc://x/y"}))


def test_matches_event_sender_falls_back_to_content_user_id() -> None:
    f = RoomEventFilter(not_senders=("@spam:x",))
    assert not f.matches_event({"type": "m.presence", "content": {"user_id": "@spam:x"}})
    assert f.matches_event({"type": "m.presence", "content": {"user_id": "@ham:x"}})
    # No sender at all: only a senders allow-list can reject it.
    assert f.matches_event({"type": "m.typing", "content": {}})
    assert not RoomEventFilter(senders=("@a:x",)).matches_event({"type": "m.typing", "content": {}})


def test_matches_event_tolerates_malformed_items() -> None:
    f = RoomEventFilter(types=("m.*",), contains_url=False)
    assert not f.matches_event({"type": 5, "sender": None, "content": []})
    assert f.matches_event({"type": "m.tag", "content": []})  # account data may have odd content


def test_filter_events() -> None:
    events: list[dict[str, Any]] = [
        {"type": "m.room.message", "sender": "@a:x", "room_id": "!r:x", "content": {"body": "1"}},
        {"type": "m.room.member", "sender": "@b:x", "room_id": "!r:x", "content": {}},
        {"type": "m.room.message", "sender": "@spam:x", "room_id": "!r:x", "content": {"body": "2"}},
        {"type": "m.room.message", "sender": "@b:x", "room_id": "!s:x", "content": {"body": "3"}},
    ]
    f = RoomEventFilter(types=("m.room.message",), not_senders=("@spam:x",), not_rooms=("!s:x",))
    assert f.filter_events(events) == [events[0]]
    assert RoomEventFilter().filter_events(events) == events
    assert RoomEventFilter(types=()).filter_events(events) == []
    ef = EventFilter(types=("m.room.member",))
    assert ef.filter_types_senders(events, lambda e: (e["type"], e["sender"])) == [events[1]]


@pytest.mark.parametrize(
    ("limit", "default", "maximum", "expected"),
    [(None, 10, 100, 10), (5, 10, 100, 5), (500, 10, 100, 100), (0, 10, 100, 0), (None, 10, 5, 5)],
)
def test_effective_limit(limit: int | None, default: int, maximum: int, expected: int) -> None:
    assert RoomEventFilter(limit=limit).effective_limit(default, maximum) == expected


# --------------------------------------------------------------------------------------------------
# Parsing: flags, roundtrip, defaults


def test_parse_spec_example() -> None:
    f = parse_filter(SPEC_EXAMPLE)
    assert f.event_format == "client"
    assert f.event_fields == ("type", "content", "sender")
    assert f.room.state.types == ("m.room.*",)
    assert f.room.timeline.limit == 10
    assert f.room.timeline.not_senders == ("@spam:example.com",)
    assert f.presence.not_senders == ("@alice:example.com",)
    assert not f.room.state.room_allowed("!726s6s6q:example.com")
    assert f.room.room_allowed("!726s6s6q:example.com")  # only the per-section filters exclude it
    assert f.room.timeline.matches_event(
        {"type": "m.room.message", "sender": "@bob:example.com", "room_id": "!other:example.com"}
    )
    assert not f.room.timeline.matches_event(
        {"type": "m.room.message", "sender": "@spam:example.com", "room_id": "!other:example.com"}
    )
    assert not f.presence.matches("m.presence", "@alice:example.com")
    assert f.presence.matches("m.presence", "@bob:example.com")

    expected = copy.deepcopy(SPEC_EXAMPLE)
    del expected["event_format"]  # the default is left out
    assert f.to_json() == expected
    assert parse_filter(f.to_json()) == f


@pytest.mark.parametrize(
    "obj",
    [
        {},
        SPEC_EXAMPLE,
        {"event_format": "federation", "event_fields": []},
        {"room": {"include_leave": True, "rooms": [], "not_rooms": ["!a:x"]}},
        {"room": {"timeline": {"limit": 0, "contains_url": False, "unread_thread_notifications": True}}},
        {"room": {"state": {"lazy_load_members": True, "include_redundant_members": True}}},
        {"room": {"account_data": {"types": []}, "ephemeral": {"not_types": ["*"]}}},
        {"account_data": {"types": ["m.direct"], "limit": 3, "senders": ["@a:x"]}},
    ],
)
def test_roundtrip(obj: dict[str, Any]) -> None:
    f = parse_filter(obj)
    assert parse_filter(f.to_json()) == f
    assert parse_filter(f.to_json()).to_json() == f.to_json()


def test_defaults() -> None:
    f = parse_filter({})
    assert f == DEFAULT_FILTER == Filter()
    assert f.to_json() == {}
    assert f.event_fields is None
    assert f.event_format == "client"
    assert not f.include_leave
    assert not f.lazy_load_members
    assert not f.include_redundant_members
    assert not f.unread_thread_notifications
    assert f.room.timeline.limit is None  # the caller applies its default
    assert f.room.timeline.contains_url is None
    assert f.room.timeline.is_unconstrained
    assert f.presence.is_unconstrained


@pytest.mark.parametrize(
    ("obj", "include_leave", "lazy", "redundant", "threads"),
    [
        ({}, False, False, False, False),
        ({"room": {"include_leave": True}}, True, False, False, False),
        ({"room": {"include_leave": False}}, False, False, False, False),
        ({"room": {"state": {"lazy_load_members": True}}}, False, True, False, False),
        ({"room": {"timeline": {"lazy_load_members": True}}}, False, True, False, False),
        (
            {"room": {"state": {"lazy_load_members": True, "include_redundant_members": True}}},
            False,
            True,
            True,
            False,
        ),
        # include_redundant_members does not apply unless lazy_load_members is true.
        ({"room": {"state": {"include_redundant_members": True}}}, False, False, False, False),
        ({"room": {"timeline": {"unread_thread_notifications": True}}}, False, False, False, True),
        (
            {
                "room": {
                    "include_leave": True,
                    "state": {"lazy_load_members": True},
                    "timeline": {"unread_thread_notifications": True},
                }
            },
            True,
            True,
            False,
            True,
        ),
    ],
)
def test_flags(obj: dict[str, Any], include_leave: bool, lazy: bool, redundant: bool, threads: bool) -> None:
    f = parse_filter(obj)
    assert f.include_leave is include_leave
    assert f.room.include_leave is include_leave
    assert f.lazy_load_members is lazy
    assert f.include_redundant_members is redundant
    assert f.unread_thread_notifications is threads


@pytest.mark.parametrize(
    ("obj", "check"),
    [
        # limit: 0 is what bots send to skip history on their first sync; Synapse accepts it.
        ({"room": {"timeline": {"limit": 0}}}, lambda f: f.room.timeline.limit == 0),
        ({"room": {"timeline": {"limit": 10.0}}}, lambda f: f.room.timeline.limit == 10),
        ({"room": {"timeline": {"limit": 10.0}}}, lambda f: type(f.room.timeline.limit) is int),
        # null counts as absent.
        ({"room": None, "presence": None, "event_fields": None}, lambda f: f == DEFAULT_FILTER),
        ({"room": {"timeline": {"types": None, "contains_url": None}}}, lambda f: f == DEFAULT_FILTER),
        # Unknown keys are ignored (forward compatibility).
        ({"presence": {"enabled": False}, "org.example.x": 1}, lambda f: f == DEFAULT_FILTER),
        ({"room": {"timeline": {"org.matrix.labels": ["x"]}}}, lambda f: f == DEFAULT_FILTER),
        ({"event_format": "federation"}, lambda f: f.event_format == "federation"),
        ({"room": {"timeline": {"contains_url": False}}}, lambda f: f.room.timeline.contains_url is False),
    ],
)
def test_lenient_but_valid(obj: dict[str, Any], check: Any) -> None:
    assert check(parse_filter(obj))


# --------------------------------------------------------------------------------------------------
# Invalid filters


@pytest.mark.parametrize(
    "obj",
    [
        [],
        "filter",
        None,
        {"event_format": "raw"},
        {"event_format": 1},
        {"event_fields": "content.body"},
        {"event_fields": ["content", 1]},
        {"presence": []},
        {"presence": {"limit": "10"}},
        {"presence": {"limit": -1}},
        {"presence": {"limit": 1.5}},
        {"presence": {"limit": True}},
        {"presence": {"types": "m.presence"}},
        {"presence": {"types": [None]}},
        {"presence": {"not_senders": ["alice"]}},
        {"account_data": {"not_types": [["m.direct"]]}},
        {"room": []},
        {"room": {"rooms": "!a:x"}},
        {"room": {"rooms": ["a:x"]}},
        {"room": {"not_rooms": [1]}},
        {"room": {"include_leave": "true"}},
        {"room": {"include_leave": 1}},
        {"room": {"timeline": "all"}},
        {"room": {"timeline": {"limit": 0.5}}},
        {"room": {"timeline": {"limit": -10}}},
        {"room": {"timeline": {"senders": ["@ok:x", "bad"]}}},
        {"room": {"timeline": {"rooms": ["#alias:x"]}}},
        {"room": {"timeline": {"contains_url": "yes"}}},
        {"room": {"state": {"lazy_load_members": 1}}},
        {"room": {"state": {"include_redundant_members": "false"}}},
        {"room": {"timeline": {"unread_thread_notifications": 0}}},
        {"room": {"ephemeral": {"types": [{"a": 1}]}}},
        {"room": {"account_data": {"not_senders": "@a:x"}}},
    ],
)
def test_invalid_filters(obj: Any) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_filter(obj)
    assert exc_info.value.status == 400
    assert exc_info.value.errcode == "M_BAD_JSON"
    with pytest.raises(MatrixError) as exc_info:
        parse_filter(obj, errcode="M_INVALID_PARAM")
    assert exc_info.value.errcode == "M_INVALID_PARAM"


def test_error_names_the_field() -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_filter({"room": {"timeline": {"limit": -1}}})
    assert "room.timeline.limit" in exc_info.value.error


def test_parse_room_event_filter() -> None:
    f = parse_room_event_filter(
        {"types": ["m.room.message"], "contains_url": True, "lazy_load_members": True}
    )
    assert isinstance(f, RoomEventFilter)
    assert f.lazy_load_members
    assert f.matches_event({"type": "m.room.message", "sender": "@a:x", "content": {"url": "mxc://a/b"}})
    assert parse_room_event_filter(None) == RoomEventFilter()
    with pytest.raises(MatrixError) as exc_info:
        parse_room_event_filter({"rooms": "!a:x"}, errcode="M_INVALID_PARAM")
    assert exc_info.value.errcode == "M_INVALID_PARAM"
    assert parse_event_filter({"types": ["m.presence"]}) == EventFilter(types=("m.presence",))
    with pytest.raises(MatrixError):
        parse_event_filter([])


# --------------------------------------------------------------------------------------------------
# The filter query parameter


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("66696p746572", None),
        ("0", None),
        ("", None),
        (" {}", None),  # not inline JSON: a (strange) filter id
        ("{}", {}),
        ('{"room":{"timeline":{"limit":0}}}', {"room": {"timeline": {"limit": 0}}}),
    ],
)
def test_parse_filter_param(value: str, expected: dict[str, Any] | None) -> None:
    assert parse_filter_param(value) == expected


@pytest.mark.parametrize("value", ["{", "{room}", '{"a": 1', '{"a": 1}}', "{'a': 1}", '{"a": NaN}'])
def test_parse_filter_param_bad_json(value: str) -> None:
    with pytest.raises(MatrixError) as exc_info:
        parse_filter_param(value)
    assert exc_info.value.status == 400
    assert exc_info.value.errcode == "M_NOT_JSON"


# --------------------------------------------------------------------------------------------------
# event_fields


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("content", ("content",)),
        ("content.body", ("content", "body")),
        # Spec appendix "Dot-separated property paths":
        (r"content.m\.relates_to", ("content", "m.relates_to")),
        (r"content.m\\foo", ("content", "m\\foo")),
        (r"content.\x", ("content", "\\x")),  # other escapes are left as-is
        (r"content.a\\.b", ("content", "a\\", "b")),  # escaped backslash, then a real dot
        ("a\\", ("a\\",)),  # trailing lone backslash is literal
        ("a..b", ("a", "", "b")),
        ("", ("",)),
    ],
)
def test_split_field_path(path: str, expected: tuple[str, ...]) -> None:
    assert split_path(path) == expected


EVENT: dict[str, Any] = {
    "type": "m.room.message",
    "sender": "@alice:example.com",
    "event_id": "$abc",
    "room_id": "!r:example.com",
    "origin_server_ts": 1432735824653,
    "content": {
        "body": "hello",
        "msgtype": "m.text",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
        "m\\foo": 1,
        "info": {"w": 10, "h": 20},
    },
    "unsigned": {"age": 1234},
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # The spec example filter's event_fields.
        (
            ["type", "content", "sender"],
            {"type": EVENT["type"], "content": EVENT["content"], "sender": EVENT["sender"]},
        ),
        # "['content.body'] will include the body field of the content object"
        (["content.body"], {"content": {"body": "hello"}}),
        ([r"content.m\.relates_to"], {"content": {"m.relates_to": EVENT["content"]["m.relates_to"]}}),
        ([r"content.m\.relates_to.rel_type"], {"content": {"m.relates_to": {"rel_type": "m.thread"}}}),
        ([r"content.m\\foo"], {"content": {"m\\foo": 1}}),
        (["content.info.w", "content.body"], {"content": {"info": {"w": 10}, "body": "hello"}}),
        (["content.info.w", "content.info.h"], {"content": {"info": {"w": 10, "h": 20}}}),
        # Overlapping paths, either order: the whole object wins.
        (["content.body", "content"], {"content": EVENT["content"]}),
        (["content", "content.body"], {"content": EVENT["content"]}),
        # Missing paths and paths through non-objects leave nothing behind.
        (["content.nope"], {}),
        (["nope.deeper"], {}),
        (["type.deeper"], {}),
        (["content.body.deeper"], {}),
        (["content.m.relates_to"], {}),  # unescaped dot: looks for "m" then "relates_to"
        (["event_id", "content.nope"], {"event_id": "$abc"}),
        # An empty list keeps everything.
        ([], EVENT),
    ],
)
def test_apply_event_fields(fields: list[str], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(EVENT)
    assert apply_event_fields(EVENT, fields) == expected
    assert EVENT == before  # the input is never modified
    f = parse_filter({"event_fields": fields})
    assert f.apply_event_fields(EVENT) == expected
    assert EVENT == before


def test_apply_event_fields_does_not_alias_into_source() -> None:
    # "content" copies the whole object by reference; the later, deeper path must not then write
    # into (and so truncate or extend) the source's own "info" object.
    event = copy.deepcopy(EVENT)
    out = apply_event_fields(event, ["content", "content.info.w", "unsigned.age"])
    assert out == {"content": EVENT["content"], "unsigned": {"age": 1234}}
    assert event == EVENT
    out["unsigned"]["extra"] = 1  # output containers built on the way are fresh dicts
    assert event["unsigned"] == {"age": 1234}


def test_filter_without_event_fields_returns_event_unchanged() -> None:
    assert DEFAULT_FILTER.apply_event_fields(EVENT) is EVENT
