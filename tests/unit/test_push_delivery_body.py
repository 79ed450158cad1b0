"""The push-gateway request bodies (Synapse's shapes), table-driven on pure code."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.services.push_delivery import body
from homeserver.services.push_delivery.unsubscribe import UnsubscribeTokens
from homeserver.state.current import RoomSnapshot, memberships_from_state
from homeserver.storage.stores.pushers import Pusher

V11 = KNOWN_ROOM_VERSIONS["11"]
ROOM = "!r:x"


def _event(type_: str, sender: str, content: dict[str, Any], state_key: str | None = None) -> Event:
    pdu: dict[str, Any] = {
        "type": type_,
        "sender": sender,
        "room_id": ROOM,
        "content": content,
        "depth": 1,
        "origin_server_ts": 1,
        "prev_events": [],
        "auth_events": [],
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(pdu, V11, event_id=f"${type_}{state_key}")


def _snapshot(*events: Event) -> RoomSnapshot:
    state = {(e.type, e.state_key or ""): e for e in events}
    return RoomSnapshot(ROOM, V11, state, (), 1, 1, memberships_from_state(state))


def _member(user: str, name: str | None = None, membership: str = "join") -> Event:
    content: dict[str, Any] = {"membership": membership}
    if name:
        content["displayname"] = name
    return _event("m.room.member", user, content, user)


PUSHER = Pusher(
    "@bob:x", "app", "pk", "http", "A", "D", None, "ko", {"url": "u", "k": 1}, None, 1_700_000_123_456
)


@pytest.mark.parametrize(
    ("event_type", "actions", "prio"),
    [
        ("m.room.message", ["notify"], "low"),
        ("m.room.message", ["notify", {"set_tweak": "sound", "value": "default"}], "high"),
        ("m.room.message", ["notify", {"set_tweak": "highlight"}], "high"),
        ("m.room.message", ["notify", {"set_tweak": "highlight", "value": False}], "low"),
        ("m.room.encrypted", ["notify"], "high"),
    ],
)
def test_priority(event_type: str, actions: list[Any], prio: str) -> None:
    assert body.priority(event_type, body.tweaks_of(actions)) == prio


def test_tweaks_default_to_true() -> None:
    assert body.tweaks_of(
        ["notify", {"set_tweak": "highlight"}, {"set_tweak": "sound", "value": "ping"}]
    ) == {
        "highlight": True,
        "sound": "ping",
    }


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((_event("m.room.name", "@a:x", {"name": "반 공지"}, ""),), "반 공지"),
        ((_event("m.room.canonical_alias", "@a:x", {"alias": "#class:x"}, ""),), "#class:x"),
        ((), None),  # a DM: the sender's name says it all (Synapse; no "Alice in Alice")
        ((_member("@carol:x", "Carol"),), "Alice and Carol"),
        ((_member("@carol:x", "Carol"), _member("@dan:x", membership="invite")), "Alice and 2 others"),
        ((_member("@carol:x", "Carol"), _member("@eve:x", membership="leave")), "Alice and Carol"),
    ],
)
def test_room_name(extra: tuple[Event, ...], expected: str | None) -> None:
    snapshot = _snapshot(_member("@alice:x", "Alice"), _member("@bob:x", "Bob"), *extra)
    assert body.room_name(snapshot, "@bob:x") == expected


def test_room_name_of_an_invite() -> None:
    invite = _event("m.room.member", "@alice:x", {"membership": "invite"}, "@bob:x")
    assert (
        body.room_name(_snapshot(_member("@alice:x", "Alice"), _member("@carol:x"), invite), "@bob:x") is None
    )
    # the inviter is not in the room's state (e.g. over federation, before joining)
    assert body.room_name(_snapshot(_member("@carol:x"), invite), "@bob:x") == "Room Invite"


def test_room_name_for_emails_names_a_dm_and_an_invite() -> None:
    dm = _snapshot(_member("@alice:x", "Alice"), _member("@bob:x", "Bob"))
    assert body.room_name(dm, "@bob:x", single_member=True) == "Alice"
    invite = _event("m.room.member", "@alice:x", {"membership": "invite"}, "@bob:x")
    snapshot = _snapshot(_member("@alice:x", "Alice"), invite)
    assert body.room_name(snapshot, "@bob:x", single_member=True) == "Invite from Alice"


def test_room_name_of_a_big_unnamed_room() -> None:
    members = [_member(f"@u{i}:x") for i in range(7)]
    assert body.room_name(_snapshot(*members), "@u0:x") == "@u1:x and 5 others"


def test_event_notification_and_badge_shapes() -> None:
    snapshot = _snapshot(_member("@alice:x", "Alice"), _member("@bob:x"))
    event = _event("m.room.message", "@alice:x", {"body": "hi"})
    full = body.event_notification(PUSHER, event, ["notify"], 4, snapshot, include_content=True)[
        "notification"
    ]
    assert full["devices"] == [
        {"app_id": "app", "pushkey": "pk", "pushkey_ts": 1_700_000_123, "data": {"k": 1}, "tweaks": {}}
    ]
    assert (full["sender_display_name"], full["counts"]) == ("Alice", {"unread": 4})
    assert "room_name" not in full  # a DM
    slim_pusher = Pusher(**{**_fields(PUSHER), "data": {"url": "u", "format": "event_id_only"}})
    slim = body.event_notification(slim_pusher, event, ["notify"], 4, snapshot, include_content=True)
    assert set(slim["notification"]) == {"event_id", "room_id", "counts", "prio", "devices"}
    badge = body.badge_notification(PUSHER, 0)["notification"]
    assert badge["counts"] == {"unread": 0} and badge["prio"] == "low" and "event_id" not in badge


def _fields(pusher: Pusher) -> dict[str, Any]:
    return {name: getattr(pusher, name) for name in pusher.__dataclass_fields__}


def test_unsubscribe_tokens() -> None:
    tokens = UnsubscribeTokens(b"secret")
    token = tokens.make("@bob:x", "m.email", "bob@school.example")
    assert tokens.parse(token) == ("@bob:x", "m.email", "bob@school.example")
    assert UnsubscribeTokens(b"other").parse(token) is None  # another server's key
    payload, _, mac = token.partition(".")
    assert tokens.parse(payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")) is None
    for bad in ("", ".", "abc", "abc.", ".abc", "!!!.???"):
        assert tokens.parse(bad) is None
