"""Sending: PUT /rooms/{roomId}/send (transaction idempotency), state events (PUT/GET
/state/{type}/{stateKey}, GET /state), redaction, and power-level checks on sending."""

from __future__ import annotations

import secrets
from typing import Any

from .client import V3
from .harness import (
    SEND,
    STATE_KEY,
    Homeserver,
    User,
    assert_api_error,
    assert_event_schema,
    assert_events_schema,
    create_room,
    event_schema_ref,
    get_messages,
    get_state,
    join_room,
    new_txn_id,
    put_state,
    room_path,
    send_event,
    send_text,
)
from .spec_schema import assert_response_matches_spec, validate

EVENT = "/rooms/{roomId}/event/{eventId}"
REDACT = "/rooms/{roomId}/redact/{eventId}/{txnId}"


def get_event(user: User, room_id: str, event_id: str) -> dict[str, Any]:
    resp = user.client.get(room_path(room_id, "event", event_id))
    event: dict[str, Any] = assert_response_matches_spec(resp, "rooms.yaml", EVENT)
    assert_event_schema(event)
    return event


def messages_with_body(user: User, room_id: str, text: str) -> list[dict[str, Any]]:
    chunk = get_messages(user, room_id, dir="b", limit=100)["chunk"]
    return [ev for ev in chunk if ev.get("content", {}).get("body") == text]


# --------------------------------------------------------------------------- send


def test_send_message(user: User) -> None:
    room_id = create_room(user)
    content = {"msgtype": "m.text", "body": "hello compat"}
    event_id = send_event(user, room_id, content)
    event = get_event(user, room_id, event_id)
    assert event["event_id"] == event_id
    assert event["room_id"] == room_id
    assert event["sender"] == user.user_id
    assert event["type"] == "m.room.message"
    assert event["content"] == content
    assert "state_key" not in event


def test_send_custom_event_type(user: User) -> None:
    room_id = create_room(user)
    event_id = send_event(
        user, room_id, {"anything": [1, 2, {"x": None}]}, event_type="org.example.compat.custom"
    )
    event = get_event(user, room_id, event_id)
    assert event["type"] == "org.example.compat.custom"
    assert event["content"] == {"anything": [1, 2, {"x": None}]}


def test_send_is_idempotent(user: User) -> None:
    room_id = create_room(user)
    txn = new_txn_id()
    text = f"idempotent {secrets.token_hex(4)}"
    first = send_text(user, room_id, text, txn_id=txn)
    second = send_text(user, room_id, text, txn_id=txn)
    third = send_text(user, room_id, text, txn_id=txn)
    assert first == second == third
    events = messages_with_body(user, room_id, text)
    assert [ev["event_id"] for ev in events] == [first]
    # The sending device sees its transaction id in unsigned.
    assert events[0].get("unsigned", {}).get("transaction_id") == txn


def test_transaction_id_only_for_sender(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    txn = new_txn_id()
    event_id = send_text(user, room_id, "whose txn", txn_id=txn)
    assert get_event(user, room_id, event_id).get("unsigned", {}).get("transaction_id") == txn
    assert "transaction_id" not in get_event(other_user, room_id, event_id).get("unsigned", {})


def test_same_txn_id_other_room_is_new_event(user: User) -> None:
    room_a, room_b = create_room(user), create_room(user)
    txn = new_txn_id()
    first = send_text(user, room_a, "room a", txn_id=txn)
    second = send_text(user, room_b, "room b", txn_id=txn)
    assert first != second
    assert get_event(user, room_b, second)["content"]["body"] == "room b"


def test_same_txn_id_other_event_type_is_new_event(hs: Homeserver, user: User) -> None:
    # A retransmission is "the same transaction ID and the same HTTP path"; another event type is
    # another path, hence a new event.
    room_id = create_room(user)
    txn = new_txn_id()
    first = send_event(user, room_id, {"n": 1}, event_type="org.example.compat.a", txn_id=txn)
    second = send_event(user, room_id, {"n": 2}, event_type="org.example.compat.b", txn_id=txn)
    if hs.is_synapse and first == second:
        # Synapse deviation: it deduplicates sends on (room, device, txn id) whatever the event
        # type, and answers the second PUT with the first event's id.
        return
    assert first != second


def test_same_txn_id_other_device_is_new_event(hs: Homeserver, user: User) -> None:
    # Transaction ids are scoped to a device.
    room_id = create_room(user)
    second_device = hs.login_ok(user)
    txn = new_txn_id()
    text = f"two devices {secrets.token_hex(4)}"
    first = send_text(user, room_id, text, txn_id=txn)
    second = send_text(second_device, room_id, text, txn_id=txn)
    assert first != second
    assert {ev["event_id"] for ev in messages_with_body(user, room_id, text)} == {first, second}


def test_send_not_json(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.put(room_path(room_id, "send", "m.room.message", new_txn_id()), data=b"{nope")
    assert_api_error(resp, "room_send.yaml", SEND, 400, "M_NOT_JSON")


def test_send_requires_token(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    resp = hs.client().put(
        room_path(room_id, "send", "m.room.message", new_txn_id()), {"msgtype": "m.text", "body": "x"}
    )
    assert_api_error(resp, "room_send.yaml", SEND, 401, "M_MISSING_TOKEN")


# --------------------------------------------------------------------------- announcement room


def test_announcement_room(user: User, other_user: User) -> None:
    room_id = create_room(
        user,
        preset="public_chat",
        power_level_content_override={"events_default": 50, "users_default": 0},
    )
    join_room(other_user, room_id)
    resp = other_user.client.put(
        room_path(room_id, "send", "m.room.message", new_txn_id()), {"msgtype": "m.text", "body": "may I?"}
    )
    # room_send.yaml documents only 400; insufficient power is the catalogue's 403 M_FORBIDDEN.
    assert_api_error(resp, "room_send.yaml", SEND, 403, "M_FORBIDDEN")
    event_id = send_text(user, room_id, "announcement")
    assert get_event(other_user, room_id, event_id)["content"]["body"] == "announcement"
    bodies = [ev["content"].get("body") for ev in get_messages(other_user, room_id, limit=50)["chunk"]]
    assert "may I?" not in bodies


# --------------------------------------------------------------------------- state


def test_put_and_get_state_with_key(user: User) -> None:
    room_id = create_room(user)
    event_id = put_state(user, room_id, "org.example.compat.state", {"v": 1}, state_key="alpha")
    assert get_state(user, room_id, "org.example.compat.state", "alpha") == {"v": 1}
    # A second PUT with the same (type, state_key) replaces the state.
    second = put_state(user, room_id, "org.example.compat.state", {"v": 2}, state_key="alpha")
    assert second != event_id
    assert get_state(user, room_id, "org.example.compat.state", "alpha") == {"v": 2}
    # Other state keys are independent.
    put_state(user, room_id, "org.example.compat.state", {"v": 3}, state_key="beta")
    assert get_state(user, room_id, "org.example.compat.state", "alpha") == {"v": 2}
    state = assert_response_matches_spec(
        user.client.get(room_path(room_id, "state")), "rooms.yaml", "/rooms/{roomId}/state"
    )
    assert_events_schema(state)
    mine = {ev["state_key"]: ev for ev in state if ev["type"] == "org.example.compat.state"}
    assert {k: ev["content"] for k, ev in mine.items()} == {"alpha": {"v": 2}, "beta": {"v": 3}}
    assert mine["alpha"]["event_id"] == second


def test_state_empty_key_trailing_slash_optional(user: User) -> None:
    room_id = create_room(user)
    base = room_path(room_id, "state", "m.room.topic")
    resp = user.client.put(base, {"topic": "no slash"})  # .../state/m.room.topic
    assert_response_matches_spec(resp, "room_state.yaml", STATE_KEY)
    for path in (base, base + "/"):
        body = assert_response_matches_spec(user.client.get(path), "rooms.yaml", STATE_KEY)
        assert body["topic"] == "no slash"
    resp = user.client.put(base + "/", {"topic": "with slash"})
    assert_response_matches_spec(resp, "room_state.yaml", STATE_KEY)
    assert get_state(user, room_id, "m.room.topic") == {"topic": "with slash"}


def test_get_state_format_event(user: User) -> None:
    room_id = create_room(user, name="Formatted")
    resp = user.client.get(room_path(room_id, "state", "m.room.name", ""), params={"format": "event"})
    assert resp.status == 200, resp.describe()
    event = resp.body
    # The 200 schema is oneOf [object, state event]; a full event matches both branches, so it is
    # validated against the state event schema (and m.room.name's) directly.
    ref = event_schema_ref("core-event-schema/state_event")
    assert ref is not None
    validate(ref, event, "GET state ?format=event")
    assert_event_schema(event)
    assert event["type"] == "m.room.name"
    assert event["state_key"] == ""
    assert event["room_id"] == room_id
    assert event["content"] == {"name": "Formatted"}


def test_get_state_not_found(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path(room_id, "state", "org.example.compat.absent", "nokey"))
    assert_api_error(resp, "rooms.yaml", STATE_KEY, 404, "M_NOT_FOUND")


def test_put_state_without_power(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    resp = other_user.client.put(room_path(room_id, "state", "m.room.name", ""), {"name": "hijack"})
    assert_api_error(resp, "room_state.yaml", STATE_KEY, 403, "M_FORBIDDEN")
    resp = user.client.get(room_path(room_id, "state", "m.room.name", ""))
    assert resp.status == 404 or resp.body.get("name") != "hijack"


def test_put_state_not_json(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.put(room_path(room_id, "state", "org.example.compat", ""), data=b"[nope")
    assert_api_error(resp, "room_state.yaml", STATE_KEY, 400, "M_NOT_JSON")


# --------------------------------------------------------------------------- redaction


def redact(user: User, room_id: str, event_id: str, txn: str, reason: str | None = None) -> str:
    body = {} if reason is None else {"reason": reason}
    resp = user.client.put(room_path(room_id, "redact", event_id, txn), body)
    return str(assert_response_matches_spec(resp, "redaction.yaml", REDACT)["event_id"])


def test_redact(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat", room_version="11")
    join_room(other_user, room_id)
    target = send_event(user, room_id, {"msgtype": "m.text", "body": "regrettable", "org.example.extra": 1})
    txn = new_txn_id()
    redaction_id = redact(user, room_id, target, txn, reason="compat redaction")
    assert redact(user, room_id, target, txn, reason="compat redaction") == redaction_id  # idempotent

    for reader in (user, other_user):
        event = get_event(reader, room_id, target)
        assert event["content"] == {}
        assert event["type"] == "m.room.message"
        assert event["sender"] == user.user_id
        because = event["unsigned"]["redacted_because"]
        assert because["event_id"] == redaction_id
        assert because["type"] == "m.room.redaction"
        assert because["content"].get("reason") == "compat redaction"
        # Room version 11 moved `redacts` into the content.
        assert because["content"]["redacts"] == target

    redaction = get_event(user, room_id, redaction_id)
    assert redaction["type"] == "m.room.redaction"
    assert redaction["content"]["redacts"] == target
    # /messages serves the pruned event too.
    chunk = get_messages(other_user, room_id, limit=20)["chunk"]
    served = next(ev for ev in chunk if ev["event_id"] == target)
    assert served["content"] == {}
    assert served["unsigned"]["redacted_because"]["event_id"] == redaction_id


def test_redact_state_event_keeps_protected_keys(user: User) -> None:
    room_id = create_room(user, room_version="11")
    event_id = put_state(
        user, room_id, "m.room.join_rules", {"join_rule": "public", "org.example.extra": True}
    )
    redact(user, room_id, event_id, new_txn_id())
    event = get_event(user, room_id, event_id)
    # The redaction algorithm keeps join_rule in m.room.join_rules content.
    assert event["content"] == {"join_rule": "public"}
    assert event["state_key"] == ""


def test_redact_others_event_needs_power(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    target = send_text(user, room_id, "the creator's")
    resp = other_user.client.put(room_path(room_id, "redact", target, new_txn_id()), {})
    # redaction.yaml documents only 200; insufficient power is the catalogue's 403 M_FORBIDDEN.
    assert_api_error(resp, "redaction.yaml", REDACT, 403, "M_FORBIDDEN")
    assert get_event(user, room_id, target)["content"]["body"] == "the creator's"
    # Their own event they may redact; a moderator may redact anyone's.
    own = send_text(other_user, room_id, "mine")
    redact(other_user, room_id, own, new_txn_id())
    assert get_event(user, room_id, own)["content"] == {}
    theirs = send_text(other_user, room_id, "moderated")
    redact(user, room_id, theirs, new_txn_id())
    assert get_event(other_user, room_id, theirs)["content"] == {}


def test_event_unknown(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path(room_id, "event", f"$compat_nosuch_{secrets.token_hex(8)}"))
    assert_api_error(resp, "rooms.yaml", EVENT, 404, "M_NOT_FOUND")


def test_event_of_room_not_joined(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="private_chat")
    event_id = send_text(user, room_id, "private")
    resp = other_user.client.get(room_path(room_id, "event", event_id))
    # rooms.yaml: 404 "the event was not found or you do not have permission to read this event".
    assert_api_error(resp, "rooms.yaml", EVENT, 404, "M_NOT_FOUND")


def test_joined_rooms_helper_sanity(user: User) -> None:
    # /joined_rooms shape is also checked elsewhere; here only that a fresh user has none.
    body = assert_response_matches_spec(
        user.client.get(f"{V3}/joined_rooms"), "list_joined_rooms.yaml", "/joined_rooms"
    )
    assert body["joined_rooms"] == []
