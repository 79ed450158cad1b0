"""Reading room history: GET /rooms/{roomId}/messages (directions, tokens, filters),
/rooms/{roomId}/context/{eventId} and /v1/rooms/{roomId}/timestamp_to_event."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from .client import q
from .harness import (
    MESSAGES,
    Homeserver,
    SyncStream,
    User,
    assert_api_error,
    assert_events_schema,
    create_room,
    get_messages,
    join_room,
    paginate,
    room_path,
    send_event,
    send_text,
)
from .spec_schema import assert_response_matches_spec

CONTEXT = "/rooms/{roomId}/context/{eventId}"
TS_TO_EVENT = "/rooms/{roomId}/timestamp_to_event"
V1 = "/_matrix/client/v1"


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [ev["event_id"] for ev in events]


def send_texts(user: User, room_id: str, count: int, prefix: str = "m") -> list[str]:
    return [send_text(user, room_id, f"{prefix}{i}") for i in range(count)]


def get_context(user: User, room_id: str, event_id: str, **params: Any) -> dict[str, Any]:
    resp = user.client.get(room_path(room_id, "context", event_id), params=params)
    body: dict[str, Any] = assert_response_matches_spec(resp, "event_context.yaml", CONTEXT)
    for key in ("events_before", "events_after", "state"):
        assert_events_schema(body.get(key, []))
    return body


# --------------------------------------------------------------------------- /messages


def test_messages_backwards_then_forwards(user: User) -> None:
    room_id = create_room(user)
    sent = send_texts(user, room_id, 5)
    newest = get_messages(user, room_id, dir="b", limit=3)
    assert ids(newest["chunk"]) == list(reversed(sent))[:3]
    assert isinstance(newest["start"], str)
    assert "end" in newest
    # Continue backwards from `end`: the two older messages follow.
    older = get_messages(user, room_id, dir="b", limit=2, **{"from": newest["end"]})
    assert ids(older["chunk"]) == [sent[1], sent[0]]
    # And forwards again from that point: chronological order.
    forwards = get_messages(user, room_id, dir="f", limit=5, **{"from": older["end"]})
    assert ids(forwards["chunk"]) == sent


def test_messages_forwards_from_room_start(user: User) -> None:
    room_id = create_room(user)
    sent = send_texts(user, room_id, 3)
    events = paginate(user, room_id, dir="f", limit=4)
    assert events[0]["type"] == "m.room.create"
    assert ids(events)[-3:] == sent
    assert [ev["origin_server_ts"] for ev in events] == sorted(ev["origin_server_ts"] for ev in events)


def test_messages_backwards_reaches_start(user: User) -> None:
    room_id = create_room(user)
    send_texts(user, room_id, 3)
    events = paginate(user, room_id, dir="b", limit=2)
    # Oldest last; the walk ends at the create event, after which no `end` is sent.
    assert events[-1]["type"] == "m.room.create"
    assert len(ids(events)) == len(set(ids(events)))


def test_messages_between_sync_tokens(user: User) -> None:
    room_id = create_room(user)
    stream = SyncStream(user)
    before = stream.sync()["next_batch"]
    sent = send_texts(user, room_id, 5)
    after = stream.until(
        lambda body: (
            sent[-1]
            in ids(
                body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])
            )
            and body["next_batch"]
        )
    )
    forwards = paginate(user, room_id, dir="f", limit=2, to=after, **{"from": before})
    assert ids(forwards) == sent
    backwards = paginate(user, room_id, dir="b", limit=2, to=before, **{"from": after})
    assert ids(backwards) == list(reversed(sent))


def test_messages_types_filter(user: User) -> None:
    room_id = create_room(user)
    text = send_text(user, room_id, "a text")
    custom = send_event(user, room_id, {"x": 1}, event_type="org.example.compat.custom")
    only_custom = get_messages(user, room_id, limit=50, filter={"types": ["org.example.compat.custom"]})
    assert ids(only_custom["chunk"]) == [custom]
    wildcard = get_messages(user, room_id, limit=50, filter={"types": ["org.example.compat.*"]})
    assert ids(wildcard["chunk"]) == [custom]
    no_messages = get_messages(user, room_id, limit=50, filter={"not_types": ["m.room.message"]})
    assert text not in ids(no_messages["chunk"])
    assert custom in ids(no_messages["chunk"])


def test_messages_senders_filter(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    mine = send_text(user, room_id, "mine")
    theirs = send_text(other_user, room_id, "theirs")
    body = get_messages(
        user, room_id, limit=50, filter={"senders": [other_user.user_id], "types": ["m.room.message"]}
    )
    assert ids(body["chunk"]) == [theirs]
    body = get_messages(
        user, room_id, limit=50, filter={"not_senders": [other_user.user_id], "types": ["m.room.message"]}
    )
    assert ids(body["chunk"]) == [mine]


def test_messages_contains_url_filter(user: User) -> None:
    room_id = create_room(user)
    plain = send_text(user, room_id, "no url here")
    image = send_event(
        user,
        room_id,
        {
            "msgtype": "m.image",
            "body": "cat.png",
            "url": f"mxc://{user.server_name}/compat{secrets.token_hex(4)}",
        },
    )
    with_url = get_messages(
        user, room_id, limit=50, filter={"contains_url": True, "types": ["m.room.message"]}
    )
    assert ids(with_url["chunk"]) == [image]
    without_url = get_messages(
        user, room_id, limit=50, filter={"contains_url": False, "types": ["m.room.message"]}
    )
    assert ids(without_url["chunk"]) == [plain]


def test_messages_lazy_load_members(hs: Homeserver, user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    talker, lurker = hs.register(), hs.register()
    join_room(talker, room_id)
    join_room(lurker, room_id)
    send_text(lurker, room_id, "early")
    send_text(user, room_id, "hello")
    last = send_text(talker, room_id, "hi")
    body = get_messages(
        user, room_id, limit=1, filter={"lazy_load_members": True, "types": ["m.room.message"]}
    )
    assert ids(body["chunk"]) == [last]
    members = {ev["state_key"] for ev in body.get("state", []) if ev["type"] == "m.room.member"}
    # The senders of the chunk get their membership in `state`; others are not required.
    assert talker.user_id in members
    assert lurker.user_id not in members


def test_messages_bad_dir(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path(room_id, "messages"), params={"dir": "sideways"})
    assert_api_error(resp, "message_pagination.yaml", MESSAGES, 400, "M_INVALID_PARAM")


def test_messages_missing_dir(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path(room_id, "messages"))
    if hs.is_synapse and resp.status == 200:
        # Synapse deviation: `dir` is required by the spec, Synapse defaults it to "f".
        assert_response_matches_spec(resp, "message_pagination.yaml", MESSAGES)
        return
    assert_api_error(resp, "message_pagination.yaml", MESSAGES, 400, ("M_MISSING_PARAM", "M_INVALID_PARAM"))


def test_messages_bad_limit(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path(room_id, "messages"), params={"dir": "b", "limit": "many"})
    assert_api_error(resp, "message_pagination.yaml", MESSAGES, 400, "M_INVALID_PARAM")


def test_messages_filter_not_json(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path(room_id, "messages"), params={"dir": "b", "filter": "{not json"})
    # The parameter is "a JSON RoomEventFilter": M_NOT_JSON; M_BAD_JSON / M_INVALID_PARAM also fit.
    assert_api_error(
        resp, "message_pagination.yaml", MESSAGES, 400, ("M_NOT_JSON", "M_BAD_JSON", "M_INVALID_PARAM")
    )


def test_messages_bad_from_token(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(
        room_path(room_id, "messages"), params={"dir": "b", "from": "compat-garbage-token"}
    )
    # An unparseable token is an invalid parameter. Synapse deviation: 400 M_UNKNOWN
    # ("'from' parameter is invalid").
    codes = ("M_INVALID_PARAM", "M_UNKNOWN") if hs.is_synapse else "M_INVALID_PARAM"
    assert_api_error(resp, "message_pagination.yaml", MESSAGES, 400, codes)


# --------------------------------------------------------------------------- /context


def test_context(user: User) -> None:
    room_id = create_room(user)
    sent = send_texts(user, room_id, 5)
    body = get_context(user, room_id, sent[2], limit=4)
    assert body["event"]["event_id"] == sent[2]
    before, after = ids(body["events_before"]), ids(body["events_after"])
    assert len(before) + len(after) <= 4
    # events_before is reverse-chronological, events_after chronological, both adjacent.
    assert before == [sent[1], sent[0]][: len(before)]
    assert after == [sent[3], sent[4]][: len(after)]
    assert before and after
    state = {(ev["type"], ev["state_key"]) for ev in body.get("state", [])}
    assert ("m.room.create", "") in state
    assert ("m.room.member", user.user_id) in state
    # start/end are /messages tokens around the returned events.
    earlier = get_messages(user, room_id, dir="b", limit=50, **{"from": body["start"]})
    assert not {sent[1], sent[2], sent[3]} & set(ids(earlier["chunk"]))
    later = get_messages(user, room_id, dir="f", limit=50, **{"from": body["end"]})
    assert sent[2] not in ids(later["chunk"])
    assert set(ids(later["chunk"])) <= set(sent[3:])


def test_context_limit_zero(user: User) -> None:
    room_id = create_room(user)
    sent = send_texts(user, room_id, 3)
    body = get_context(user, room_id, sent[1], limit=0)
    assert body["event"]["event_id"] == sent[1]
    assert body.get("events_before", []) == []
    assert body.get("events_after", []) == []


def test_context_filter(user: User) -> None:
    room_id = create_room(user)
    first = send_text(user, room_id, "first")
    send_event(user, room_id, {"x": 1}, event_type="org.example.compat.noise")
    middle = send_text(user, room_id, "middle")
    send_event(user, room_id, {"x": 2}, event_type="org.example.compat.noise")
    last = send_text(user, room_id, "last")
    body = get_context(user, room_id, middle, limit=10, filter='{"types":["m.room.message"]}')
    assert ids(body["events_before"]) == [first]
    assert ids(body["events_after"]) == [last]


def test_context_unknown_event(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path(room_id, "context", f"$compat_nosuch_{secrets.token_hex(8)}"))
    # event_context.yaml documents only 200; an unknown event is the catalogue's 404 M_NOT_FOUND.
    assert_api_error(resp, "event_context.yaml", CONTEXT, 404, "M_NOT_FOUND")


def test_context_room_not_joined(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="private_chat")
    event_id = send_text(user, room_id, "private")
    resp = other_user.client.get(room_path(room_id, "context", event_id))
    # Not documented; 403 M_FORBIDDEN (Synapse, and what /messages documents) or 404 M_NOT_FOUND
    # (what GET /event documents for events you may not read).
    body = assert_api_error(resp, "event_context.yaml", CONTEXT, (403, 404), ("M_FORBIDDEN", "M_NOT_FOUND"))
    assert (resp.status, body["errcode"]) in ((403, "M_FORBIDDEN"), (404, "M_NOT_FOUND"))


# --------------------------------------------------------------------------- timestamp_to_event


def ts_to_event(user: User, room_id: str, ts: int, direction: str) -> Any:
    return user.client.get(f"{V1}/rooms/{q(room_id)}/timestamp_to_event", params={"ts": ts, "dir": direction})


@pytest.mark.parametrize("direction", ["f", "b"])
def test_timestamp_to_event(user: User, direction: str) -> None:
    room_id = create_room(user)
    sent = send_texts(user, room_id, 3)
    events = paginate(user, room_id, dir="f", limit=50)
    by_id = {ev["event_id"]: ev for ev in events}
    pivot = by_id[sent[1]]["origin_server_ts"]
    body = assert_response_matches_spec(
        ts_to_event(user, room_id, pivot, direction), "room_event_by_timestamp.yaml", TS_TO_EVENT
    )
    stamps = [ev["origin_server_ts"] for ev in events]
    expected = (
        min(t for t in stamps if t >= pivot) if direction == "f" else max(t for t in stamps if t <= pivot)
    )
    assert body["origin_server_ts"] == expected
    assert body["event_id"] in by_id
    assert by_id[body["event_id"]]["origin_server_ts"] == body["origin_server_ts"]


def test_timestamp_to_event_bounds(user: User) -> None:
    room_id = create_room(user)
    send_text(user, room_id, "only")
    events = paginate(user, room_id, dir="f", limit=50)
    first_ts, last_ts = events[0]["origin_server_ts"], events[-1]["origin_server_ts"]
    # Nothing after the end or before the start: 404 M_NOT_FOUND.
    assert_api_error(
        ts_to_event(user, room_id, last_ts + 3_600_000, "f"),
        "room_event_by_timestamp.yaml",
        TS_TO_EVENT,
        404,
        "M_NOT_FOUND",
    )
    assert_api_error(
        ts_to_event(user, room_id, first_ts - 3_600_000, "b"),
        "room_event_by_timestamp.yaml",
        TS_TO_EVENT,
        404,
        "M_NOT_FOUND",
    )
    # From long before the room existed, forwards: the create event.
    body = assert_response_matches_spec(
        ts_to_event(user, room_id, 0, "f"), "room_event_by_timestamp.yaml", TS_TO_EVENT
    )
    assert body["event_id"] == events[0]["event_id"]


def test_timestamp_to_event_bad_dir(user: User) -> None:
    room_id = create_room(user)
    resp = ts_to_event(user, room_id, 0, "sideways")
    assert_api_error(resp, "room_event_by_timestamp.yaml", TS_TO_EVENT, 400, "M_INVALID_PARAM")


def test_timestamp_to_event_missing_ts(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(f"{V1}/rooms/{q(room_id)}/timestamp_to_event", params={"dir": "f"})
    assert_api_error(
        resp, "room_event_by_timestamp.yaml", TS_TO_EVENT, 400, ("M_MISSING_PARAM", "M_INVALID_PARAM")
    )


def test_timestamp_to_event_room_not_joined(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="private_chat")
    resp = ts_to_event(other_user, room_id, 0, "f")
    # Not documented (only 200/404/429); Synapse answers 403 M_FORBIDDEN like the other reads.
    body = assert_api_error(
        resp, "room_event_by_timestamp.yaml", TS_TO_EVENT, (403, 404), ("M_FORBIDDEN", "M_NOT_FOUND")
    )
    assert (resp.status, body["errcode"]) in ((403, "M_FORBIDDEN"), (404, "M_NOT_FOUND"))
