"""Receipts, read markers, typing, presence, room tags and ignored users, black-box.

Endpoints: POST /rooms/{roomId}/receipt/{receiptType}/{eventId}, POST /rooms/{roomId}/read_markers,
PUT /rooms/{roomId}/typing/{userId}, GET/PUT /presence/{userId}/status,
GET/PUT/DELETE /user/{userId}/rooms/{roomId}/tags[/{tag}], and m.ignored_user_list account data.
Every response is checked against the spec; what reaches /sync (m.receipt, m.typing, m.presence,
m.fully_read, m.tag) against the event schemas. No sleeps: waiting is long-polling /sync.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from .client import V3, q
from .harness import (
    Homeserver,
    SyncStream,
    User,
    assert_api_error,
    create_room,
    get_messages,
    invite_user,
    join_room,
    room_path,
    send_event,
    send_text,
    timeline_events,
)
from .spec_schema import (
    assert_request_matches_spec,
    assert_response_matches_spec,
    spec_dir,
    validate,
)

RECEIPT = "/rooms/{roomId}/receipt/{receiptType}/{eventId}"
READ_MARKERS = "/rooms/{roomId}/read_markers"
TYPING = "/rooms/{roomId}/typing/{userId}"
PRESENCE = "/presence/{userId}/status"
TAGS = "/user/{userId}/rooms/{roomId}/tags"
TAG = "/user/{userId}/rooms/{roomId}/tags/{tag}"


def assert_event(event: dict[str, Any]) -> None:
    ref = (spec_dir() / "data" / "event-schemas" / "schema" / f"{event['type']}.yaml").resolve().as_uri()
    validate(ref + "#", event, f"{event['type']} event")


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
    events = [e for e in (room.get("ephemeral") or {}).get("events", []) if e.get("type") == event_type]
    for event in events:
        assert_event(event)
    return events


def room_account_data(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
    events = [e for e in (room.get("account_data") or {}).get("events", []) if e.get("type") == event_type]
    for event in events:
        assert_event(event)
    return events


def receipts_in(body: dict[str, Any], room_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(event_id, receipt type, user_id, data) of every receipt in the room's m.receipt events."""
    found = []
    for event in ephemeral(body, room_id, "m.receipt"):
        for event_id, types in event["content"].items():
            for receipt_type, users in types.items():
                found.extend((event_id, receipt_type, user, data) for user, data in users.items())
    return found


def fresh_initial_sync(user: User) -> dict[str, Any]:
    """An initial sync that is really computed now: Synapse answers a repeated identical request
    from its response cache (for minutes), so this one carries a filter no other request uses."""
    unique = {"account_data": {"not_types": [f"org.example.compat.{secrets.token_hex(4)}"]}}
    return SyncStream(user, filter=unique).sync()


def two_in_a_room(hs: Homeserver) -> tuple[User, User, str]:
    alice, bob = hs.register(), hs.register()
    room_id = create_room(alice, preset="public_chat")
    join_room(bob, room_id)
    return alice, bob, room_id


def post_receipt(
    user: User, room_id: str, event_id: str, receipt_type: str = "m.read", **body: Any
) -> dict[str, Any]:
    assert_request_matches_spec("receipts.yaml", RECEIPT, "POST", body)
    resp = user.client.post(room_path(room_id, "receipt", receipt_type, event_id), body)
    result: dict[str, Any] = assert_response_matches_spec(resp, "receipts.yaml", RECEIPT)
    return result


def set_typing(user: User, room_id: str, typing: bool, timeout: int | None = None) -> None:
    body: dict[str, Any] = {"typing": typing}
    if timeout is not None:
        body["timeout"] = timeout
    assert_request_matches_spec("typing.yaml", TYPING, "PUT", body)
    resp = user.client.put(room_path(room_id, "typing", user.user_id), body)
    assert_response_matches_spec(resp, "typing.yaml", TYPING)


def typing_users(stream: SyncStream, room_id: str, want: Callable[[list[str]], bool]) -> list[str]:
    def check(body: dict[str, Any]) -> list[str] | None:
        for event in ephemeral(body, room_id, "m.typing"):
            users = list(event["content"]["user_ids"])
            if want(users):
                return users or ["<none>"]
        return None

    found: list[str] = stream.until(check)
    return [] if found == ["<none>"] else found


def presence_path(user_id: str) -> str:
    return f"{V3}/presence/{q(user_id)}/status"


def put_presence(user: User, presence: str, status_msg: str | None = None) -> None:
    body: dict[str, Any] = {"presence": presence}
    if status_msg is not None:
        body["status_msg"] = status_msg
    assert_request_matches_spec("presence.yaml", PRESENCE, "PUT", body)
    resp = user.client.put(presence_path(user.user_id), body)
    assert_response_matches_spec(resp, "presence.yaml", PRESENCE)


def get_presence(user: User, target: str) -> dict[str, Any]:
    body: dict[str, Any] = assert_response_matches_spec(
        user.client.get(presence_path(target)), "presence.yaml", PRESENCE
    )
    return body


def tags_path(user: User, room_id: str, tag: str | None = None) -> str:
    path = f"{V3}/user/{q(user.user_id)}/rooms/{q(room_id)}/tags"
    return path if tag is None else f"{path}/{q(tag)}"


# --------------------------------------------------------------------------- receipts


def test_read_receipt_reaches_room_members(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    event_id = send_text(alice, room_id, "please read")
    stream = SyncStream(alice)
    stream.sync()
    assert post_receipt(bob, room_id, event_id) == {}

    def bobs_receipt(body: dict[str, Any]) -> dict[str, Any] | None:
        for eid, rtype, user, data in receipts_in(body, room_id):
            if (eid, rtype, user) == (event_id, "m.read", bob.user_id):
                return data
        return None

    data = stream.until(bobs_receipt)
    assert isinstance(data["ts"], int)
    assert "thread_id" not in data
    # An initial sync carries the current receipts too.
    assert bobs_receipt(fresh_initial_sync(alice))


def test_private_read_receipt_reaches_only_its_owner(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    first = send_text(alice, room_id, "one")
    second = send_text(alice, room_id, "two")
    alice_stream, bob_stream = SyncStream(alice), SyncStream(bob)
    alice_stream.sync()
    bob_stream.sync()
    post_receipt(bob, room_id, first, "m.read.private")
    post_receipt(bob, room_id, second, "m.read")  # after the private one: a marker for Alice

    alice_stream.until(
        lambda b: any(r[:3] == (second, "m.read", bob.user_id) for r in receipts_in(b, room_id))
    )
    for body in alice_stream.responses:
        assert all(r[1] != "m.read.private" for r in receipts_in(body, room_id)), body
    assert all(r[1] != "m.read.private" for r in receipts_in(fresh_initial_sync(alice), room_id))
    bob_stream.until(
        lambda b: any(r[:3] == (first, "m.read.private", bob.user_id) for r in receipts_in(b, room_id))
    )


def test_threaded_receipt(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    root = send_text(alice, room_id, "thread root")
    reply = send_event(
        alice,
        room_id,
        {"msgtype": "m.text", "body": "reply", "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    )
    stream = SyncStream(alice)
    stream.sync()
    post_receipt(bob, room_id, reply, thread_id=root)

    def threaded(body: dict[str, Any]) -> dict[str, Any] | None:
        for eid, rtype, user, data in receipts_in(body, room_id):
            if (eid, rtype, user) == (reply, "m.read", bob.user_id):
                return data
        return None

    assert stream.until(threaded)["thread_id"] == root


def test_receipt_errors(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    event_id = send_text(alice, room_id, "x")
    # Synapse answers an unknown receipt type with M_UNKNOWN, we with M_INVALID_PARAM.
    assert_api_error(
        bob.client.post(room_path(room_id, "receipt", "m.not_a_receipt", event_id), {}),
        "receipts.yaml",
        RECEIPT,
        400,
    )
    for body in ({"thread_id": ""}, {"thread_id": 7}):
        assert_api_error(
            bob.client.post(room_path(room_id, "receipt", "m.read", event_id), body),
            "receipts.yaml",
            RECEIPT,
            400,
            "M_INVALID_PARAM",
        )
    assert_api_error(
        bob.client.post(room_path(room_id, "receipt", "m.fully_read", event_id), {"thread_id": "main"}),
        "receipts.yaml",
        RECEIPT,
        400,
        "M_INVALID_PARAM",
    )


def test_read_markers(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    first = send_text(alice, room_id, "one")
    second = send_text(alice, room_id, "two")
    stream = SyncStream(bob)
    stream.sync()
    body = {"m.fully_read": second, "m.read": second}
    assert_request_matches_spec("read_markers.yaml", READ_MARKERS, "POST", body)
    resp = bob.client.post(room_path(room_id, "read_markers"), body)
    assert_response_matches_spec(resp, "read_markers.yaml", READ_MARKERS)

    markers = stream.until(lambda b: room_account_data(b, room_id, "m.fully_read"))
    assert markers[-1]["content"] == {"event_id": second}
    path = f"{V3}/user/{q(bob.user_id)}/rooms/{q(room_id)}/account_data/m.fully_read"
    assert bob.client.get(path).body == {"event_id": second}
    # The marker never moves back.
    post_receipt(bob, room_id, first, "m.fully_read")
    assert bob.client.get(path).body == {"event_id": second}
    alice_stream = SyncStream(alice)
    alice_stream.until(
        lambda b: any(r[:3] == (second, "m.read", bob.user_id) for r in receipts_in(b, room_id))
    )


# --------------------------------------------------------------------------- typing


def test_typing_notifications(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    stream = SyncStream(bob)
    stream.sync()
    set_typing(alice, room_id, True, 30_000)
    assert typing_users(stream, room_id, lambda users: alice.user_id in users) == [alice.user_id]
    set_typing(alice, room_id, False)
    assert typing_users(stream, room_id, lambda users: not users) == []


def test_typing_expires(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    stream = SyncStream(bob)
    stream.sync()
    set_typing(alice, room_id, True, 1000)
    typing_users(stream, room_id, lambda users: alice.user_id in users)
    # Nobody says "stopped": the server times it out (Synapse checks every 5 s).
    assert typing_users(stream, room_id, lambda users: not users) == []


def test_typing_errors(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    outsider = hs.register()
    # Someone else's typing state: Synapse answers 400 M_FORBIDDEN, we 403 M_FORBIDDEN.
    resp = bob.client.put(room_path(room_id, "typing", alice.user_id), {"typing": True, "timeout": 1000})
    assert_api_error(resp, "typing.yaml", TYPING, (400, 403), "M_FORBIDDEN")
    resp = outsider.client.put(room_path(room_id, "typing", outsider.user_id), {"typing": True})
    assert_api_error(resp, "typing.yaml", TYPING, 403, "M_FORBIDDEN")


# --------------------------------------------------------------------------- presence


def test_set_and_get_own_presence(user: User) -> None:
    status = f"compat {secrets.token_hex(4)}"
    put_presence(user, "online", status)
    got = get_presence(user, user.user_id)
    assert got["presence"] == "online"
    assert got["status_msg"] == status
    put_presence(user, "unavailable", status)
    assert get_presence(user, user.user_id)["presence"] == "unavailable"


def test_presence_of_others(hs: Homeserver) -> None:
    alice, bob, _ = two_in_a_room(hs)
    stranger = hs.register()
    put_presence(alice, "online", "visible to room members")
    assert get_presence(bob, alice.user_id)["status_msg"] == "visible to room members"
    resp = stranger.client.get(presence_path(alice.user_id))
    assert_api_error(resp, "presence.yaml", PRESENCE, 403, "M_FORBIDDEN")
    resp = bob.client.put(presence_path(alice.user_id), {"presence": "offline"})
    assert_api_error(resp, "presence.yaml", PRESENCE, 403, "M_FORBIDDEN")
    resp = alice.client.put(presence_path(alice.user_id), {"presence": "sleeping"})
    assert_api_error(resp, "presence.yaml", PRESENCE, 400)


def test_presence_reaches_room_members_in_sync(hs: Homeserver) -> None:
    alice, bob, _ = two_in_a_room(hs)
    stream = SyncStream(bob)
    stream.sync()
    status = f"lunch {secrets.token_hex(4)}"
    put_presence(alice, "unavailable", status)

    def alices(body: dict[str, Any]) -> dict[str, Any] | None:
        for event in (body.get("presence") or {}).get("events", []):
            if event.get("sender") == alice.user_id and event["content"].get("status_msg") == status:
                assert_event(event)
                return dict(event)
        return None

    event = stream.until(alices)
    assert event["content"]["presence"] == "unavailable"


# --------------------------------------------------------------------------- tags


def test_room_tags(hs: Homeserver) -> None:
    alice = hs.register()
    room_id = create_room(alice)
    stream = SyncStream(alice)
    stream.sync()
    body = {"order": 0.25}
    assert_request_matches_spec("tags.yaml", TAG, "PUT", body)
    assert_response_matches_spec(
        alice.client.put(tags_path(alice, room_id, "m.favourite"), body), "tags.yaml", TAG
    )
    assert_response_matches_spec(alice.client.put(tags_path(alice, room_id, "u.work"), {}), "tags.yaml", TAG)
    got = assert_response_matches_spec(alice.client.get(tags_path(alice, room_id)), "tags.yaml", TAGS)
    assert got == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}

    tagged = stream.until(
        lambda b: [e for e in room_account_data(b, room_id, "m.tag") if "u.work" in e["content"]["tags"]]
    )
    assert tagged[-1]["content"]["tags"]["m.favourite"] == {"order": 0.25}

    resp = alice.client.delete(tags_path(alice, room_id, "u.work"))
    assert_response_matches_spec(resp, "tags.yaml", TAG)
    got = assert_response_matches_spec(alice.client.get(tags_path(alice, room_id)), "tags.yaml", TAGS)
    assert got == {"tags": {"m.favourite": {"order": 0.25}}}
    stream.until(
        lambda b: [e for e in room_account_data(b, room_id, "m.tag") if "u.work" not in e["content"]["tags"]]
    )


def test_room_tags_of_another_user(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    room_id = create_room(alice)
    assert_api_error(bob.client.get(tags_path(alice, room_id)), "tags.yaml", TAGS, 403, "M_FORBIDDEN")
    resp = bob.client.put(tags_path(alice, room_id, "u.x"), {})
    assert_api_error(resp, "tags.yaml", TAG, 403, "M_FORBIDDEN")


# --------------------------------------------------------------------------- ignoring users


def ignore(user: User, *others: User) -> None:
    content = {"ignored_users": {o.user_id: {} for o in others}}
    resp = user.client.put(f"{V3}/user/{q(user.user_id)}/account_data/m.ignored_user_list", content)
    assert resp.status == 200, resp.describe()


def test_ignored_users_messages_are_hidden(hs: Homeserver) -> None:
    alice, bob, room_id = two_in_a_room(hs)
    carol = hs.register()
    join_room(carol, room_id)
    ignore(alice, bob)
    stream = SyncStream(alice)
    stream.sync()
    hidden = send_text(bob, room_id, "ignored")
    shown = send_text(carol, room_id, "not ignored")

    stream.wait_for_event(room_id, shown)
    for body in stream.responses:
        assert hidden not in [e["event_id"] for e in timeline_events(body, room_id)]
    chunk = get_messages(alice, room_id, dir="b", limit=50)["chunk"]
    assert shown in [e["event_id"] for e in chunk]
    assert hidden not in [e["event_id"] for e in chunk]


def test_invites_from_ignored_users_are_hidden(hs: Homeserver) -> None:
    alice, bob, carol = hs.register(), hs.register(), hs.register()
    ignore(alice, bob)
    stream = SyncStream(alice)
    stream.sync()
    from_bob = create_room(bob)
    invite_user(bob, from_bob, alice.user_id)
    from_carol = create_room(carol)
    invite_user(carol, from_carol, alice.user_id)

    stream.until(lambda b: from_carol in b.get("rooms", {}).get("invite", {}))
    for body in stream.responses:
        assert from_bob not in body.get("rooms", {}).get("invite", {})
    assert from_bob not in fresh_initial_sync(alice).get("rooms", {}).get("invite", {})
    assert from_carol in fresh_initial_sync(alice).get("rooms", {}).get("invite", {})
