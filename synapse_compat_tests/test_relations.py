"""Event relationships: /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] for
edits (m.replace), reactions (m.annotation), threads (m.thread) and references (m.reference),
server-side aggregations, and /v1/rooms/{roomId}/threads."""

from __future__ import annotations

import secrets
from typing import Any

from .client import Response, q
from .harness import (
    SEND,
    Homeserver,
    User,
    assert_api_error,
    assert_event_schema,
    assert_events_schema,
    create_room,
    join_room,
    new_txn_id,
    room_path,
    send_event,
    send_text,
)
from .spec_schema import assert_response_matches_spec

V1 = "/_matrix/client/v1"
REL = "/rooms/{roomId}/relations/{eventId}"
REL_TYPE = "/rooms/{roomId}/relations/{eventId}/{relType}"
REL_TYPE_EVENT = "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}"
THREADS = "/rooms/{roomId}/threads"


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [ev["event_id"] for ev in events]


def relations_resp(user: User, room_id: str, event_id: str, *tail: str, **params: Any) -> Response:
    path = "/".join([f"{V1}/rooms", q(room_id), "relations", q(event_id), *(q(t) for t in tail)])
    return user.client.get(path, params=params)


def relations(user: User, room_id: str, event_id: str, *tail: str, **params: Any) -> dict[str, Any]:
    template = {0: REL, 1: REL_TYPE, 2: REL_TYPE_EVENT}[len(tail)]
    body: dict[str, Any] = assert_response_matches_spec(
        relations_resp(user, room_id, event_id, *tail, **params), "relations.yaml", template
    )
    assert_events_schema(body["chunk"])
    return body


def all_relations(user: User, room_id: str, event_id: str, *tail: str, **params: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for _ in range(100):
        body = relations(user, room_id, event_id, *tail, **params)
        events.extend(body["chunk"])
        if "next_batch" not in body:
            return events
        params["from"] = body["next_batch"]
    raise AssertionError("relations pagination did not terminate")


def get_event(user: User, room_id: str, event_id: str) -> dict[str, Any]:
    body: dict[str, Any] = assert_response_matches_spec(
        user.client.get(room_path(room_id, "event", event_id)),
        "rooms.yaml",
        "/rooms/{roomId}/event/{eventId}",
    )
    assert_event_schema(body)
    return body


def edit(user: User, room_id: str, target: str, text: str) -> str:
    return send_event(
        user,
        room_id,
        {
            "msgtype": "m.text",
            "body": f"* {text}",
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        },
    )


def react(user: User, room_id: str, target: str, key: str) -> str:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}
    return send_event(user, room_id, content, event_type="m.reaction")


def thread_reply(user: User, room_id: str, root: str, text: str) -> str:
    return send_event(
        user,
        room_id,
        {"msgtype": "m.text", "body": text, "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    )


def reference(user: User, room_id: str, target: str) -> str:
    return send_event(
        user,
        room_id,
        {
            "msgtype": "m.text",
            "body": "see above",
            "m.relates_to": {"rel_type": "m.reference", "event_id": target},
        },
    )


# --------------------------------------------------------------------------- m.replace


def test_edits(user: User) -> None:
    room_id = create_room(user)
    original = send_text(user, room_id, "I like cake")
    first = edit(user, room_id, original, "I like chocolate cake")
    second = edit(user, room_id, original, "I really like chocolate cake")
    assert ids(relations(user, room_id, original, "m.replace")["chunk"]) == [second, first]
    assert ids(relations(user, room_id, original, "m.replace", "m.room.message")["chunk"]) == [second, first]
    assert ids(relations(user, room_id, original)["chunk"]) == [second, first]
    assert relations(user, room_id, original, "m.replace", "m.reaction")["chunk"] == []

    # Server-side aggregation: the most recent edit (origin_server_ts, then the larger event id).
    edits = {eid: get_event(user, room_id, eid) for eid in (first, second)}
    latest = max(edits, key=lambda eid: (edits[eid]["origin_server_ts"], eid))
    event = get_event(user, room_id, original)
    replace = event["unsigned"]["m.relations"]["m.replace"]
    assert replace["event_id"] == latest
    assert replace["content"]["m.new_content"]["body"] == edits[latest]["content"]["m.new_content"]["body"]
    # Since v1.7 the original content is served unchanged.
    assert event["content"]["body"] == "I like cake"


# --------------------------------------------------------------------------- m.annotation


def test_reactions(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    target = send_text(user, room_id, "react to me")
    r1 = react(user, room_id, target, "👍")
    r2 = react(other_user, room_id, target, "👍")
    r3 = react(user, room_id, target, "🎉")
    assert ids(relations(user, room_id, target, "m.annotation")["chunk"]) == [r3, r2, r1]
    chunk = relations(user, room_id, target, "m.annotation", "m.reaction")["chunk"]
    assert ids(chunk) == [r3, r2, r1]
    assert chunk[0]["content"]["m.relates_to"]["key"] == "🎉"
    assert relations(user, room_id, target, "m.annotation", "m.room.message")["chunk"] == []
    assert relations(user, room_id, target, "m.thread")["chunk"] == []


def test_duplicate_annotation(user: User) -> None:
    room_id = create_room(user)
    target = send_text(user, room_id, "once only")
    first = react(user, room_id, target, "👀")
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👀"}}
    resp = user.client.put(room_path(room_id, "send", "m.reaction", new_txn_id()), content)
    assert_api_error(resp, "room_send.yaml", SEND, 400, "M_DUPLICATE_ANNOTATION")
    # Once the first reaction is redacted, the same reaction may be sent again.
    resp = user.client.put(room_path(room_id, "redact", first, new_txn_id()), {})
    assert_response_matches_spec(resp, "redaction.yaml", "/rooms/{roomId}/redact/{eventId}/{txnId}")
    again = react(user, room_id, target, "👀")
    assert ids(relations(user, room_id, target, "m.annotation")["chunk"]) == [again]


def test_relations_pagination(user: User) -> None:
    room_id = create_room(user)
    target = send_text(user, room_id, "many reactions")
    sent = [react(user, room_id, target, f"k{i}") for i in range(5)]
    first_page = relations(user, room_id, target, "m.annotation", limit=2)
    assert ids(first_page["chunk"]) == [sent[4], sent[3]]
    assert "next_batch" in first_page
    everything = all_relations(user, room_id, target, "m.annotation", limit=2)
    assert ids(everything) == list(reversed(sent))
    forwards = all_relations(user, room_id, target, "m.annotation", limit=2, dir="f")
    assert ids(forwards) == sent


# --------------------------------------------------------------------------- m.thread


def test_threads(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    bystander = hs.register()
    join_room(bystander, room_id)
    root = send_text(user, room_id, "thread root")
    send_text(user, room_id, "not a thread")
    reply1 = thread_reply(user, room_id, root, "first reply")
    reply2 = thread_reply(other_user, room_id, root, "second reply")

    assert ids(relations(user, room_id, root, "m.thread")["chunk"]) == [reply2, reply1]
    assert ids(relations(user, room_id, root, "m.thread", "m.room.message")["chunk"]) == [reply2, reply1]

    # Server-side aggregation on the root.
    for viewer, participated in ((user, True), (other_user, True), (bystander, False)):
        thread = get_event(viewer, room_id, root)["unsigned"]["m.relations"]["m.thread"]
        assert thread["count"] == 2
        assert thread["latest_event"]["event_id"] == reply2
        assert thread["current_user_participated"] is participated

    body = assert_response_matches_spec(
        user.client.get(f"{V1}/rooms/{q(room_id)}/threads"), "threads_list.yaml", THREADS
    )
    assert_events_schema(body["chunk"])
    assert ids(body["chunk"]) == [root]
    assert body["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"] == reply2

    for viewer, expected in ((other_user, [root]), (bystander, [])):
        resp = viewer.client.get(f"{V1}/rooms/{q(room_id)}/threads", params={"include": "participated"})
        assert ids(assert_response_matches_spec(resp, "threads_list.yaml", THREADS)["chunk"]) == expected


def test_threads_ordered_by_latest_activity(user: User) -> None:
    room_id = create_room(user)
    old_root = send_text(user, room_id, "old root")
    new_root = send_text(user, room_id, "new root")
    thread_reply(user, room_id, new_root, "reply to new")
    thread_reply(user, room_id, old_root, "reply to old, now latest")
    resp = user.client.get(f"{V1}/rooms/{q(room_id)}/threads")
    body = assert_response_matches_spec(resp, "threads_list.yaml", THREADS)
    assert ids(body["chunk"]) == [old_root, new_root]
    page = assert_response_matches_spec(
        user.client.get(f"{V1}/rooms/{q(room_id)}/threads", params={"limit": 1}), "threads_list.yaml", THREADS
    )
    assert ids(page["chunk"]) == [old_root]
    rest = assert_response_matches_spec(
        user.client.get(f"{V1}/rooms/{q(room_id)}/threads", params={"limit": 1, "from": page["next_batch"]}),
        "threads_list.yaml",
        THREADS,
    )
    assert ids(rest["chunk"]) == [new_root]


def test_threads_bad_include(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(f"{V1}/rooms/{q(room_id)}/threads", params={"include": "compat_bogus"})
    assert_api_error(resp, "threads_list.yaml", THREADS, 400, "M_INVALID_PARAM")


def test_threads_room_not_joined(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="private_chat")
    resp = other_user.client.get(f"{V1}/rooms/{q(room_id)}/threads")
    assert_api_error(resp, "threads_list.yaml", THREADS, 403, "M_FORBIDDEN")


def test_thread_off_a_relation_rejected(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    root = send_text(user, room_id, "root")
    reply = thread_reply(user, room_id, root, "reply")
    content = {
        "msgtype": "m.text",
        "body": "nested",
        "m.relates_to": {"rel_type": "m.thread", "event_id": reply},
    }
    resp = user.client.put(room_path(room_id, "send", "m.room.message", new_txn_id()), content)
    # Servers SHOULD reject a thread rooted at an event with m.relates_to: 400 M_UNKNOWN.
    assert_api_error(resp, "room_send.yaml", SEND, 400, "M_UNKNOWN")


def test_relations_recurse(user: User) -> None:
    room_id = create_room(user)
    root = send_text(user, room_id, "root")
    reply = thread_reply(user, room_id, root, "reply")
    reaction = react(user, room_id, reply, "👍")
    flat = relations(user, room_id, root)
    assert ids(flat["chunk"]) == [reply]
    assert "recursion_depth" not in flat
    deep = relations(user, room_id, root, recurse="true")
    assert ids(deep["chunk"]) == [reaction, reply]
    assert isinstance(deep["recursion_depth"], int) and deep["recursion_depth"] >= 2


# --------------------------------------------------------------------------- m.reference


def test_references(user: User) -> None:
    room_id = create_room(user)
    target = send_text(user, room_id, "the original")
    ref1 = reference(user, room_id, target)
    ref2 = reference(user, room_id, target)
    assert ids(relations(user, room_id, target, "m.reference")["chunk"]) == [ref2, ref1]
    assert ids(relations(user, room_id, target, "m.reference", "m.room.message")["chunk"]) == [ref2, ref1]


def test_mixed_relations(user: User) -> None:
    room_id = create_room(user)
    target = send_text(user, room_id, "everything points here")
    e = edit(user, room_id, target, "edited")
    r = react(user, room_id, target, "🙂")
    ref = reference(user, room_id, target)
    assert ids(relations(user, room_id, target)["chunk"]) == [ref, r, e]
    assert ids(relations(user, room_id, target, "m.reference")["chunk"]) == [ref]
    assert ids(relations(user, room_id, target, "org.example.compat.unknown_rel")["chunk"]) == []


# --------------------------------------------------------------------------- errors


def test_relations_unknown_event(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    resp = relations_resp(user, room_id, f"$compat_nosuch_{secrets.token_hex(8)}")
    # Synapse deviation: 404 M_UNKNOWN ("Unknown parent event."); the spec's example is M_NOT_FOUND.
    assert_api_error(
        resp, "relations.yaml", REL, 404, ("M_NOT_FOUND", "M_UNKNOWN") if hs.is_synapse else "M_NOT_FOUND"
    )


def test_relations_room_not_joined(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user, preset="private_chat")
    target = send_text(user, room_id, "private")
    react(user, room_id, target, "🔒")
    resp = relations_resp(other_user, room_id, target, "m.annotation")
    if hs.is_synapse and resp.status == 403:
        # Synapse deviation: 403 M_FORBIDDEN ("not in room"); the spec documents 404 for a parent
        # event "the user does not have permission to read".
        assert_api_error(resp, "relations.yaml", REL_TYPE, 403, "M_FORBIDDEN")
        return
    assert_api_error(resp, "relations.yaml", REL_TYPE, 404, "M_NOT_FOUND")
