"""The Event model, the builder and room version data."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import decode_signing_key_base64

from homeserver.core.errors import MatrixError
from homeserver.crypto.event_signing import verify_event_signature
from homeserver.crypto.hashes import check_content_hash, event_id_from_pdu
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.builder import build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import (
    DEFAULT_ROOM_VERSION,
    KNOWN_ROOM_VERSIONS,
    STABLE_ROOM_VERSIONS,
    V3,
    V6,
    V9,
    V10,
    V11,
    V12,
    EventIdFormat,
    RoomVersion,
    get_room_version,
)

KEY = ServerSigningKey.from_signing_key(
    decode_signing_key_base64("ed25519", "a_test", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
)


def _build(room_version: RoomVersion = V11, **overrides: Any) -> Event:
    kwargs: dict[str, Any] = {
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "type": "m.room.message",
        "content": {"body": "hi", "msgtype": "m.text"},
        "prev_event_ids": ["$prev"],
        "auth_event_ids": ["$create", "$pl", "$member"],
        "depth": 10,
        "origin_server_ts": 1_700_000_000_000,
        "server_name": "example.org",
        "signing_key": KEY,
    }
    kwargs.update(overrides)
    return build_event(room_version, **kwargs)


# -- room versions ----------------------------------------------------------------------------------


def test_room_version_table() -> None:
    assert set(KNOWN_ROOM_VERSIONS) >= {"6", "7", "8", "9", "10", "11"}
    assert DEFAULT_ROOM_VERSION == "11" and DEFAULT_ROOM_VERSION in STABLE_ROOM_VERSIONS
    assert set(STABLE_ROOM_VERSIONS) == set(KNOWN_ROOM_VERSIONS)
    assert get_room_version("11") is V11 and get_room_version("1") is None
    flags = {
        ident: (
            v.knock_join_rule,
            v.restricted_join_rule,
            v.knock_restricted_join_rule,
            v.enforce_int_power_levels,
        )
        for ident, v in KNOWN_ROOM_VERSIONS.items()
    }
    assert flags["6"] == (False, False, False, False)
    assert flags["7"] == (True, False, False, False)
    assert flags["8"] == flags["9"] == (True, True, False, False)
    assert flags["10"] == flags["11"] == flags["12"] == (True, True, True, True)
    assert V3.event_id_format is EventIdFormat.V3 and V6.event_id_format is EventIdFormat.V4
    assert [v for v in KNOWN_ROOM_VERSIONS.values() if v.special_case_aliases_auth] == [
        KNOWN_ROOM_VERSIONS[i] for i in ("3", "4", "5")
    ]
    assert V11.redacts_in_content and V11.implicit_room_creator and not V10.redacts_in_content
    assert V12.room_ids_as_hashes and V12.privileged_creators and not V11.privileged_creators
    assert V6.max_depth == 2**53 - 1 and V3.max_depth == 2**63 - 1
    assert hash(V10) != hash(V11) and V10 != V11


# -- builder ----------------------------------------------------------------------------------------


def test_built_event_is_hashed_signed_and_identified() -> None:
    event = _build()
    pdu = event.pdu
    assert set(pdu) == {
        "auth_events", "prev_events", "type", "sender", "content", "depth", "origin_server_ts", "room_id",
        "hashes", "signatures",
    }  # fmt: skip
    assert "origin" not in pdu and "event_id" not in pdu and "unsigned" not in pdu
    assert check_content_hash(pdu)
    verify_event_signature(V11, pdu, "example.org", KEY.key_id, KEY.verify_key)
    assert event.event_id == event_id_from_pdu(pdu, V11)
    assert event.event_id.startswith("$") and len(event.event_id) == 44


def test_builder_state_event_and_unsigned_extra() -> None:
    event = _build(
        type="m.room.member",
        state_key="@bob:example.org",
        content={"membership": "invite"},
        unsigned_extra={"invite_room_state": [{"type": "m.room.name"}]},
    )
    assert event.state_key == "@bob:example.org" and event.is_state()
    assert event.state_key_tuple == ("m.room.member", "@bob:example.org")
    assert event.membership == "invite"
    assert event.unsigned == {"invite_room_state": [{"type": "m.room.name"}]}
    # unsigned is not covered by the id
    assert event.event_id == event_id_from_pdu({k: v for k, v in event.pdu.items() if k != "unsigned"}, V11)


@pytest.mark.parametrize(("room_version", "in_content"), [(V10, False), (V11, True), (V12, True)])
def test_builder_redacts_placement(room_version: RoomVersion, in_content: bool) -> None:
    content = {"reason": "spam"}
    event = _build(room_version, type="m.room.redaction", content=content, redacts="$target")
    assert event.redacts == "$target"
    if in_content:
        assert event.pdu["content"] == {"reason": "spam", "redacts": "$target"} and "redacts" not in event.pdu
    else:
        assert event.pdu["redacts"] == "$target" and event.pdu["content"] == {"reason": "spam"}
    assert content == {"reason": "spam"}  # caller's dict untouched


def test_redacts_property_reads_the_right_place() -> None:
    # A v10 redaction's content.redacts is meaningless; a v11 top-level redacts is too.
    v10 = Event(
        {"type": "m.room.redaction", "sender": "@a:x", "room_id": "!r:x", "content": {"redacts": "$c"}}, V10
    )
    assert v10.redacts is None
    v11 = Event(
        {"type": "m.room.redaction", "sender": "@a:x", "room_id": "!r:x", "content": {}, "redacts": "$t"}, V11
    )
    assert v11.redacts is None
    message = Event(
        {"type": "m.room.message", "sender": "@a:x", "room_id": "!r:x", "content": {"redacts": "$c"}}, V11
    )
    assert message.redacts is None


def test_builder_caps_depth_and_validates_room_id() -> None:
    assert _build(depth=2**60).depth == 2**53 - 1
    with pytest.raises(ValueError):
        _build(room_id=None)


def test_v12_create_event_room_id_is_derived() -> None:
    create = _build(
        V12,
        room_id=None,
        type="m.room.create",
        state_key="",
        content={"room_version": "12"},
        prev_event_ids=[],
        auth_event_ids=[],
        depth=1,
    )
    assert "room_id" not in create.pdu
    assert create.room_id == "!" + create.event_id[1:]
    # A provisional room id (what the persister's drafts share until the create event exists) is
    # not part of the event.
    provisional = _build(
        V12, room_id="!provisional:x", type="m.room.create", state_key="", content={}, prev_event_ids=[],
        auth_event_ids=[], depth=1,
    )  # fmt: skip
    assert "room_id" not in provisional.pdu
    assert provisional.room_id == "!" + provisional.event_id[1:]


# -- Event ------------------------------------------------------------------------------------------


def test_event_properties_and_given_id() -> None:
    pdu = {
        "type": "m.room.member",
        "sender": "@a:x",
        "room_id": "!r:x",
        "state_key": "@a:x",
        "content": {"membership": "join"},
        "prev_events": ["$p1", "$p2"],
        "auth_events": ["$a1"],
        "depth": 4,
        "origin_server_ts": 99,
        "hashes": {"sha256": "h"},
        "signatures": {"x": {}},
    }
    event = Event(pdu, V9, "$given")
    assert event.event_id == "$given"
    assert (event.type, event.sender, event.room_id, event.depth, event.origin_server_ts) == (
        "m.room.member", "@a:x", "!r:x", 4, 99,
    )  # fmt: skip
    assert event.prev_event_ids == ["$p1", "$p2"] and event.auth_event_ids == ["$a1"]
    assert event.membership == "join" and event.redacts is None
    assert event.hashes == {"sha256": "h"} and event.signatures == {"x": {}} and event.unsigned == {}
    assert event.pdu is pdu and event.room_version is V9
    assert Event(pdu, V9).event_id == event_id_from_pdu(pdu, V9)
    assert "@a:x" in repr(event)
    with pytest.raises(AttributeError):
        event.extra = 1  # type: ignore[attr-defined]


def test_message_event_has_no_state_key() -> None:
    event = Event({"type": "m.room.message", "sender": "@a:x", "room_id": "!r:x", "content": {}}, V11)
    assert event.state_key is None and not event.is_state() and event.membership is None
    assert event.prev_event_ids == [] and event.auth_event_ids == []
    with pytest.raises(ValueError):
        _ = event.state_key_tuple


def test_empty_state_key_is_state() -> None:
    event = Event(
        {"type": "m.room.name", "sender": "@a:x", "room_id": "!r:x", "state_key": "", "content": {}}, V11
    )
    assert event.is_state() and event.state_key_tuple == ("m.room.name", "")


def test_redacted_keeps_id_and_prunes() -> None:
    event = _build(content={"body": "secret"})
    redacted = event.redacted()
    assert redacted.event_id == event.event_id and redacted == event and hash(redacted) == hash(event)
    assert redacted.content == {}
    assert event.content == {"body": "secret"}


@pytest.mark.parametrize(
    "pdu",
    [
        {"sender": "@a:x", "room_id": "!r:x", "content": {}},
        {"type": "x", "room_id": "!r:x", "content": {}},
        {"type": 1, "sender": "@a:x", "room_id": "!r:x", "content": {}},
        {"type": "x", "sender": "@a:x", "room_id": "!r:x", "content": []},
        {"type": "x", "sender": "@a:x", "room_id": "!r:x", "content": {}, "state_key": 5},
        {"type": "x", "sender": "@a:x", "content": {}},
    ],
)
def test_malformed_pdus_raise_bad_json(pdu: dict[str, Any]) -> None:
    with pytest.raises(MatrixError) as exc:
        Event(pdu, V11, "$x")
    assert exc.value.status == 400 and exc.value.errcode == "M_BAD_JSON"
