"""Room tags and ignored users, black-box (beyond the basics in test_receipts_typing_presence.py).

Endpoints: GET/PUT/DELETE /user/{userId}/rooms/{roomId}/tags[/{tag}] and the m.tag room account
data in /sync; the m.ignored_user_list account data and its effect on /sync (messages of ignored users
are left out, their state events are not, un-ignoring resumes delivery). Every response is checked
against the spec, account data events against their event schemas. No sleeps: waiting is long-polling
/sync.
"""

from __future__ import annotations

import secrets
from typing import Any

from .client import V3, q
from .harness import (
    Homeserver,
    SyncStream,
    User,
    assert_api_error,
    create_room,
    get_messages,
    join_room,
    send_text,
    timeline_events,
)
from .spec_schema import (
    assert_error,
    assert_request_matches_spec,
    assert_response_matches_spec,
    spec_dir,
    validate,
)

TAGS = "/user/{userId}/rooms/{roomId}/tags"
TAG = "/user/{userId}/rooms/{roomId}/tags/{tag}"
ACCOUNT_DATA = "/user/{userId}/account_data/{type}"


def event_schema(event_type: str) -> str:
    return (spec_dir() / "data" / "event-schemas" / "schema" / f"{event_type}.yaml").resolve().as_uri() + "#"


def tags_path(user: User, room_id: str, tag: str | None = None) -> str:
    path = f"{V3}/user/{q(user.user_id)}/rooms/{q(room_id)}/tags"
    return path if tag is None else f"{path}/{q(tag)}"


def put_tag(user: User, room_id: str, tag: str, body: dict[str, Any]) -> None:
    assert_request_matches_spec("tags.yaml", TAG, "PUT", body)
    resp = user.client.put(tags_path(user, room_id, tag), body)
    assert assert_response_matches_spec(resp, "tags.yaml", TAG) == {}


def delete_tag(user: User, room_id: str, tag: str) -> None:
    resp = user.client.delete(tags_path(user, room_id, tag))
    assert assert_response_matches_spec(resp, "tags.yaml", TAG) == {}


def get_tags(user: User, room_id: str) -> dict[str, Any]:
    body = assert_response_matches_spec(user.client.get(tags_path(user, room_id)), "tags.yaml", TAGS)
    tags: dict[str, Any] = body["tags"]
    return tags


def tag_events(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = body.get("rooms", {}).get("join", {}).get(room_id) or {}
    events = [e for e in (room.get("account_data") or {}).get("events", []) if e.get("type") == "m.tag"]
    for event in events:
        validate(event_schema("m.tag"), event, "m.tag event")
    return events


def fresh_initial_sync(user: User) -> dict[str, Any]:
    """An initial sync computed now (a filter no other request uses defeats Synapse's response cache)."""
    unique = {"account_data": {"not_types": [f"org.example.compat.{secrets.token_hex(4)}"]}}
    return SyncStream(user, filter=unique).sync()


# --------------------------------------------------------------------------- tags


def test_untagged_room_has_no_tags(user: User) -> None:
    room_id = create_room(user)
    assert get_tags(user, room_id) == {}
    # Removing a tag the room does not have is not an error (the spec documents only 200).
    delete_tag(user, room_id, "u.never_set")
    assert get_tags(user, room_id) == {}


def test_tags_with_order(user: User) -> None:
    room_id = create_room(user)
    put_tag(user, room_id, "m.favourite", {"order": 0.25})
    put_tag(user, room_id, "m.lowpriority", {"order": 1})
    put_tag(user, room_id, "u.work", {"order": 0})
    put_tag(user, room_id, "u.no order", {})
    put_tag(user, room_id, "org.example.compat.custom", {"order": 0.5})
    assert get_tags(user, room_id) == {
        "m.favourite": {"order": 0.25},
        "m.lowpriority": {"order": 1},
        "u.work": {"order": 0},
        "u.no order": {},
        "org.example.compat.custom": {"order": 0.5},
    }

    # PUT again replaces the tag's content.
    put_tag(user, room_id, "m.favourite", {"order": 0.75})
    put_tag(user, room_id, "u.work", {})
    tags = get_tags(user, room_id)
    assert tags["m.favourite"] == {"order": 0.75}
    assert tags["u.work"] == {}

    delete_tag(user, room_id, "m.lowpriority")
    delete_tag(user, room_id, "u.no order")
    assert get_tags(user, room_id) == {
        "m.favourite": {"order": 0.75},
        "u.work": {},
        "org.example.compat.custom": {"order": 0.5},
    }


def test_tags_are_per_room_and_per_user(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    room_id = create_room(alice, preset="public_chat")
    other_room = create_room(alice)
    join_room(bob, room_id)
    put_tag(alice, room_id, "u.alices", {"order": 0.5})
    put_tag(bob, room_id, "u.bobs", {})
    assert get_tags(alice, room_id) == {"u.alices": {"order": 0.5}}
    assert get_tags(bob, room_id) == {"u.bobs": {}}
    assert get_tags(alice, other_room) == {}

    # Tags are only visible to the user that set them, in /sync too.
    for user, mine in ((alice, "u.alices"), (bob, "u.bobs")):
        events = tag_events(fresh_initial_sync(user), room_id)
        assert events, f"no m.tag in {user.user_id}'s initial sync"
        assert set(events[-1]["content"]["tags"]) == {mine}


def test_tags_in_sync(user: User) -> None:
    room_id = create_room(user)
    stream = SyncStream(user)
    stream.sync()
    put_tag(user, room_id, "m.favourite", {"order": 0.1})
    put_tag(user, room_id, "u.later", {})

    def has_both(body: dict[str, Any]) -> dict[str, Any] | None:
        for event in tag_events(body, room_id):
            if set(event["content"]["tags"]) == {"m.favourite", "u.later"}:
                return dict(event["content"]["tags"])
        return None

    assert stream.until(has_both) == {"m.favourite": {"order": 0.1}, "u.later": {}}
    # A fresh initial sync carries the current tags too; after a delete the event shrinks.
    assert has_both(fresh_initial_sync(user))
    delete_tag(user, room_id, "m.favourite")
    content = stream.until(
        lambda b: [e["content"] for e in tag_events(b, room_id) if "m.favourite" not in e["content"]["tags"]]
    )
    assert content[-1] == {"tags": {"u.later": {}}}


def test_tag_name_length(user: User) -> None:
    room_id = create_room(user)
    longest = "u." + "x" * 253  # "The name of a tag MUST NOT exceed 255 bytes."
    put_tag(user, room_id, longest, {})
    assert longest in get_tags(user, room_id)
    resp = user.client.put(tags_path(user, room_id, longest + "x"), {})
    assert_api_error(resp, "tags.yaml", TAG, 400, "M_INVALID_PARAM")
    # Multi-byte characters count in bytes: 128 two-byte characters are 256 bytes.
    resp = user.client.put(tags_path(user, room_id, "é" * 128), {})
    assert_api_error(resp, "tags.yaml", TAG, 400, "M_INVALID_PARAM")
    assert set(get_tags(user, room_id)) == {longest}


def test_tag_errors(hs: Homeserver) -> None:
    alice = hs.register()
    room_id = create_room(alice)
    resp = alice.client.put(tags_path(alice, room_id, "u.bad"), [0.5])
    assert_api_error(resp, "tags.yaml", TAG, 400, "M_BAD_JSON")
    resp = alice.client.put(tags_path(alice, room_id, "u.bad"), data=b"{nope")
    assert_api_error(resp, "tags.yaml", TAG, 400, "M_NOT_JSON")
    assert get_tags(alice, room_id) == {}
    assert_error(hs.client().get(tags_path(alice, room_id)), 401, "M_MISSING_TOKEN")
    assert_error(hs.client().put(tags_path(alice, room_id, "u.x"), {}), 401, "M_MISSING_TOKEN")
    # A room the user has no membership in cannot be tagged (both we and Synapse say 403).
    outsider_room = create_room(hs.register())
    resp = alice.client.put(tags_path(alice, outsider_room, "u.x"), {})
    assert_api_error(resp, "tags.yaml", TAG, 403, "M_FORBIDDEN")
    # Someone else's tags can be neither removed nor read.
    bob = hs.register()
    put_tag(alice, room_id, "u.mine", {})
    resp = bob.client.delete(tags_path(alice, room_id, "u.mine"))
    assert_api_error(resp, "tags.yaml", TAG, 403, "M_FORBIDDEN")
    assert get_tags(alice, room_id) == {"u.mine": {}}


# --------------------------------------------------------------------------- ignoring users


def ignored_path(user: User) -> str:
    return f"{V3}/user/{q(user.user_id)}/account_data/m.ignored_user_list"


def set_ignored(user: User, *others: User) -> None:
    content = {"ignored_users": {o.user_id: {} for o in others}}
    validate(
        event_schema("m.ignored_user_list"), {"type": "m.ignored_user_list", "content": content}, "content"
    )
    resp = user.client.put(ignored_path(user), content)
    assert assert_response_matches_spec(resp, "account-data.yaml", ACCOUNT_DATA) == {}


def ignored_list_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    events = [
        e
        for e in (body.get("account_data") or {}).get("events", [])
        if e.get("type") == "m.ignored_user_list"
    ]
    for event in events:
        validate(event_schema("m.ignored_user_list"), event, "m.ignored_user_list event")
    return events


def three_in_a_room(hs: Homeserver) -> tuple[User, User, User, str]:
    alice, bob, carol = hs.register(), hs.register(), hs.register()
    room_id = create_room(alice, preset="public_chat")
    join_room(bob, room_id)
    join_room(carol, room_id)
    return alice, bob, carol, room_id


def event_ids(body: dict[str, Any], room_id: str) -> list[str]:
    return [e["event_id"] for e in timeline_events(body, room_id)]


def test_ignored_user_list_account_data(hs: Homeserver) -> None:
    alice, bob, carol = hs.register(), hs.register(), hs.register()
    stream = SyncStream(alice)
    stream.sync()
    set_ignored(alice, bob, carol)
    resp = alice.client.get(ignored_path(alice))
    body = assert_response_matches_spec(resp, "account-data.yaml", ACCOUNT_DATA)
    assert body == {"ignored_users": {bob.user_id: {}, carol.user_id: {}}}

    events = stream.until(ignored_list_events)
    assert set(events[-1]["content"]["ignored_users"]) == {bob.user_id, carol.user_id}
    set_ignored(alice, carol)
    stream.until(
        lambda b: [e for e in ignored_list_events(b) if set(e["content"]["ignored_users"]) == {carol.user_id}]
    )


def test_ignoring_hides_messages_but_not_state(hs: Homeserver) -> None:
    alice, bob, carol, room_id = three_in_a_room(hs)
    stream = SyncStream(alice)
    stream.sync()
    set_ignored(alice, bob)
    # The sync stream picks the change up right away ("the sync API for all clients should
    # immediately start ignoring the user").
    stream.until(ignored_list_events)

    hidden = send_text(bob, room_id, "you do not see me")
    # "Servers must still send state events sent by ignored users to clients."
    resp = bob.client.put(
        f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}",
        {"membership": "join", "displayname": "Bob (renamed)"},
    )
    state_event = assert_response_matches_spec(
        resp, "room_state.yaml", "/rooms/{roomId}/state/{eventType}/{stateKey}"
    )["event_id"]
    shown = send_text(carol, room_id, "you see me")

    stream.wait_for_event(room_id, shown)
    delivered = [event_id for body in stream.responses for event_id in event_ids(body, room_id)]
    assert hidden not in delivered
    assert state_event in delivered

    initial = fresh_initial_sync(alice)
    assert hidden not in event_ids(initial, room_id)
    chunk = get_messages(alice, room_id, dir="b", limit=50)["chunk"]
    assert hidden not in [e["event_id"] for e in chunk]
    assert {shown, state_event} <= {e["event_id"] for e in chunk}
    # Others still see everything.
    assert hidden in [e["event_id"] for e in get_messages(carol, room_id, dir="b", limit=50)["chunk"]]


def test_unignoring_resumes_delivery(hs: Homeserver) -> None:
    alice, bob, _carol, room_id = three_in_a_room(hs)
    set_ignored(alice, bob)
    stream = SyncStream(alice)
    stream.sync()
    hidden = send_text(bob, room_id, "while ignored")
    set_ignored(alice)  # an empty list
    stream.until(lambda b: [e for e in ignored_list_events(b) if e["content"]["ignored_users"] == {}])
    after = send_text(bob, room_id, "after un-ignoring")
    stream.wait_for_event(room_id, after)
    # The server "should not send events that were missed while the user was ignored" to the
    # running stream; a fresh sync is how a client gets them back.
    assert hidden in [e["event_id"] for e in get_messages(alice, room_id, dir="b", limit=50)["chunk"]]


def test_ignored_user_list_must_be_an_object(user: User) -> None:
    resp = user.client.put(ignored_path(user), ["@someone:example.org"])
    assert_api_error(resp, "account-data.yaml", ACCOUNT_DATA, 400, ("M_BAD_JSON", "M_NOT_JSON"))
    resp = user.client.put(ignored_path(user), data=b"not json")
    assert_api_error(resp, "account-data.yaml", ACCOUNT_DATA, 400, "M_NOT_JSON")
