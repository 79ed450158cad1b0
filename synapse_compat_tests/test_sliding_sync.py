"""Simplified sliding sync (MSC4186, `org.matrix.simplified_msc3575`) as Element X uses it.

The form Synapse serves: `pos`/`timeout` as query parameters, `lists` with `ranges` answered with
`ops: [{op: SYNC, range, room_ids}]` in recency order, `rooms` keyed by room id, extensions.
Skipped when the server does not advertise the feature.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pytest

from .client import V3, q
from .harness import (
    Homeserver,
    User,
    create_room,
    invite_user,
    join_room,
    put_state,
    room_path,
    send_text,
)

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


@pytest.fixture(autouse=True)
def _needs_sliding_sync(hs: Homeserver) -> None:
    features = hs.client().get("/_matrix/client/versions").json.get("unstable_features", {})
    if not features.get("org.matrix.simplified_msc3575"):
        pytest.skip("simplified sliding sync not advertised")


def ss(
    user: User, body: dict[str, Any], pos: str | None = None, timeout: int | None = None, status: int = 200
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if pos is not None:
        params["pos"] = pos
    if timeout is not None:
        params["timeout"] = timeout
    resp = user.client.post(SS, body, params=params)
    assert resp.status == status, resp.describe()
    out: dict[str, Any] = resp.json
    if status == 200:
        assert isinstance(out["pos"], str)
    return out


def a_list(
    ranges: list[list[int]] | None = None, limit: int = 5, state: Any = (), **filters: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ranges": ranges if ranges is not None else [[0, 20]],
        "timeline_limit": limit,
        "required_state": [list(p) for p in state],
    }
    if filters:
        body["filters"] = filters
    return body


def list_ids(resp: dict[str, Any], name: str = "all") -> list[str]:
    ops = resp["lists"][name]["ops"]
    assert all(op["op"] == "SYNC" for op in ops)
    return [r for op in ops for r in op["room_ids"]]


def event_ids(room: dict[str, Any], key: str = "timeline") -> list[str]:
    return [e["event_id"] for e in room.get(key, [])]


def state_keys(room: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in room.get("required_state", [])}


def test_initial_lists_in_recency_order(hs: Homeserver) -> None:
    alice = hs.register()
    r1, r2, r3, r4 = (create_room(alice) for _ in range(4))
    send_text(alice, r1, "newest")
    # A window smaller than the list (Synapse skips sorting when the range covers all rooms).
    resp = ss(alice, {"lists": {"all": a_list(ranges=[[0, 2]], limit=1)}})
    assert resp["lists"]["all"]["count"] == 4
    assert resp["lists"]["all"]["ops"][0]["range"] == [0, 2]
    assert list_ids(resp) == [r1, r4, r3]
    stamps = [resp["rooms"][r]["bump_stamp"] for r in (r1, r4, r3)]
    assert stamps == sorted(stamps, reverse=True)
    assert r2 not in resp["rooms"]
    for room_id in (r1, r3, r4):
        room = resp["rooms"][room_id]
        assert room["initial"] is True
        assert room["joined_count"] == 1 and room["invited_count"] == 0


def test_ranges_window(hs: Homeserver) -> None:
    alice = hs.register()
    rooms = [create_room(alice) for _ in range(3)]
    resp = ss(alice, {"lists": {"all": a_list(ranges=[[0, 0]], limit=1)}})
    assert resp["lists"]["all"]["count"] == 3
    assert list_ids(resp) == [rooms[-1]]
    assert set(resp["rooms"]) == {rooms[-1]}
    resp = ss(alice, {"lists": {"all": a_list(ranges=[[1, 1]], limit=1)}})
    assert list_ids(resp) == [rooms[1]]


def test_timeline_limit_limited_prev_batch(hs: Homeserver) -> None:
    alice = hs.register()
    room_id = create_room(alice)
    sent = [send_text(alice, room_id, f"m{i}") for i in range(5)]
    resp = ss(alice, {"lists": {"all": a_list(limit=2)}})
    room = resp["rooms"][room_id]
    assert event_ids(room) == sent[-2:]
    assert room["limited"] is True
    assert room["num_live"] == 0
    status, older, _ = alice.client.get(
        f"{room_path(room_id, 'messages')}", params={"from": room["prev_batch"], "dir": "b", "limit": 2}
    )
    assert status == 200
    assert [e["event_id"] for e in older["chunk"]] == [sent[2], sent[1]]
    # timeline_limit 0: no events.
    resp = ss(alice, {"lists": {"all": a_list(limit=0)}})
    assert "timeline" not in resp["rooms"][room_id]


def test_required_state_wildcards_me_lazy(hs: Homeserver) -> None:
    alice, bob = hs.register(displayname="Alice"), hs.register(displayname="Bob")
    room_id = create_room(alice, name="Wild", topic="t", preset="public_chat")
    join_room(bob, room_id)
    send_text(bob, room_id, "from bob")
    want = [["m.room.name", ""], ["m.room.member", "$LAZY"], ["m.room.topic", "nope"]]
    room = ss(alice, {"lists": {"all": a_list(limit=1, state=want)}})["rooms"][room_id]
    assert state_keys(room) == {("m.room.name", ""), ("m.room.member", bob.user_id)}
    room = ss(alice, {"lists": {"all": a_list(limit=1, state=[["m.room.member", "$ME"]])}})["rooms"][room_id]
    assert state_keys(room) == {("m.room.member", alice.user_id)}
    room = ss(alice, {"lists": {"all": a_list(limit=1, state=[["m.room.member", "*"]])}})["rooms"][room_id]
    assert state_keys(room) == {("m.room.member", alice.user_id), ("m.room.member", bob.user_id)}
    room = ss(alice, {"lists": {"all": a_list(limit=1, state=[["*", "*"]])}})["rooms"][room_id]
    keys = state_keys(room)
    assert {("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.topic", "")} <= keys
    assert ("m.room.member", bob.user_id) in keys


def test_name_avatar_heroes_dm(hs: Homeserver) -> None:
    alice, bob = hs.register(displayname="Alice"), hs.register(displayname="Bob")
    named = create_room(alice, name="Named")
    put_state(alice, named, "m.room.avatar", {"url": "mxc://example.org/avatar"})
    dm = create_room(alice, invite=[bob.user_id], is_direct=True)
    join_room(bob, dm)
    status, _, _ = alice.client.put(
        f"{V3}/user/{q(alice.user_id)}/account_data/m.direct", {bob.user_id: [dm]}
    )
    assert status == 200
    resp = ss(alice, {"lists": {"all": a_list(limit=1)}})
    room = resp["rooms"][named]
    assert room["name"] == "Named" and room["avatar"] == "mxc://example.org/avatar"
    assert "heroes" not in room
    room = resp["rooms"][dm]
    assert "name" not in room
    assert room["heroes"] == [{"user_id": bob.user_id, "displayname": "Bob"}]
    assert room["joined_count"] == 2
    dms = ss(alice, {"lists": {"all": a_list(limit=0, is_dm=True)}})
    assert list_ids(dms) == [dm]
    not_dms = ss(alice, {"lists": {"all": a_list(limit=0, is_dm=False)}})
    assert list_ids(not_dms) == [named]


def test_incremental_sends_only_changes(hs: Homeserver) -> None:
    alice = hs.register()
    r1, r2 = create_room(alice), create_room(alice)
    body = {"lists": {"all": a_list(limit=3, state=[["m.room.name", ""]])}}
    first = ss(alice, body)
    quiet = ss(alice, body, pos=first["pos"], timeout=0)
    assert quiet.get("rooms", {}) == {}
    assert quiet["pos"] == first["pos"]
    new = send_text(alice, r1, "later")
    put_state(alice, r1, "m.room.name", {"name": "Renamed"})
    second = ss(alice, body, pos=first["pos"], timeout=0)
    assert set(second["rooms"]) == {r1}
    room = second["rooms"][r1]
    assert "initial" not in room
    assert event_ids(room)[0] == new and len(event_ids(room)) == 2
    assert room["limited"] is False
    assert room["num_live"] == 2
    assert room["name"] == "Renamed"
    assert state_keys(room) == {("m.room.name", "")}
    assert set(list_ids(second)) == {r1, r2}
    # The same pos retried gets the same answer.
    again = ss(alice, body, pos=first["pos"], timeout=0)
    assert set(again["rooms"]) == {r1}
    assert event_ids(again["rooms"][r1]) == event_ids(room)
    assert list_ids(again) == list_ids(second)
    assert again["pos"] == second["pos"]
    # From the newer pos: nothing.
    third = ss(alice, body, pos=second["pos"], timeout=0)
    assert third.get("rooms", {}) == {}


def test_unknown_pos(hs: Homeserver) -> None:
    alice = hs.register()
    create_room(alice)
    first = ss(alice, {"lists": {"all": a_list()}})
    head, _, token = first["pos"].partition("/")
    resp = ss(alice, {"lists": {"all": a_list()}}, pos=f"{int(head) + 1000}/{token}", status=400)
    assert resp["errcode"] == "M_UNKNOWN_POS"
    garbage = ss(alice, {"lists": {"all": a_list()}}, pos="garbage", status=400)
    # Synapse answers a malformed pos with M_UNKNOWN ("Invalid stream token"); we say M_UNKNOWN_POS so
    # the client starts over.
    assert garbage["errcode"] in (("M_UNKNOWN_POS", "M_UNKNOWN") if hs.is_synapse else ("M_UNKNOWN_POS",))
    # Another user's position is not this user's connection.
    other = hs.register()
    resp = ss(other, {"lists": {"all": a_list()}}, pos=first["pos"], status=400)
    assert resp["errcode"] == "M_UNKNOWN_POS"
    # Starting over works.
    assert ss(alice, {"lists": {"all": a_list()}})["lists"]["all"]["count"] == 1


def test_long_poll_wakes_on_message(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    room_id = create_room(alice, preset="public_chat")
    join_room(bob, room_id)
    body = {"lists": {"all": a_list(limit=5)}}
    first = ss(alice, body)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(ss(alice, body, pos=first["pos"], timeout=20000)))
    thread.start()
    event_id = send_text(bob, room_id, "wake up")
    thread.join(30)
    assert not thread.is_alive()
    assert event_id in event_ids(result["rooms"][room_id])
    assert result["pos"] != first["pos"]


def test_filters_encrypted_invite_types_spaces(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    plain = create_room(alice)
    encrypted = create_room(
        alice,
        initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ],
    )
    space = create_room(alice, creation_content={"type": "m.space"})
    put_state(alice, space, "m.space.child", {"via": [alice.server_name]}, state_key=plain)
    invited = create_room(bob)
    invite_user(bob, invited, alice.user_id)

    def ids(**filters: Any) -> list[str]:
        return list_ids(ss(alice, {"lists": {"all": a_list(limit=0, **filters)}}))

    assert ids(is_encrypted=True) == [encrypted]
    assert ids(is_invite=True) == [invited]
    assert set(ids(is_invite=False)) == {plain, encrypted, space}
    assert ids(room_types=["m.space"]) == [space]
    assert set(ids(room_types=[None])) == {plain, encrypted, invited}
    assert set(ids(not_room_types=["m.space"])) == {plain, encrypted, invited}
    if hs.is_synapse:
        # Synapse 1.163 answers the `spaces` filter with 500 (NotImplementedError in
        # filter_rooms_using_tables).
        return
    assert ids(spaces=[space]) == [plain]


def test_invite_state_and_bump_stamp(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    mine = create_room(alice)
    room_id = create_room(bob, name="Come in")
    invite_user(bob, room_id, alice.user_id)
    resp = ss(alice, {"lists": {"all": a_list(limit=5)}})
    assert set(list_ids(resp)) == {room_id, mine}
    room = resp["rooms"][room_id]
    # An invite's bump stamp is at the invite: newer than anything in the own room.
    assert room["bump_stamp"] > resp["rooms"][mine]["bump_stamp"]
    assert "timeline" not in room and "required_state" not in room
    stripped = {(e["type"], e["state_key"]) for e in room["invite_state"]}
    assert ("m.room.member", alice.user_id) in stripped
    assert ("m.room.name", "") in stripped
    assert isinstance(room["bump_stamp"], int)
    # Joining turns it into a full room on the next response.
    join_room(alice, room_id)
    again = ss(alice, {"lists": {"all": a_list(limit=5)}}, pos=resp["pos"], timeout=0)
    joined = again["rooms"][room_id]
    assert "invite_state" not in joined
    assert joined["joined_count"] == 2
    assert joined["timeline"]


def test_room_subscriptions(hs: Homeserver) -> None:
    alice = hs.register()
    old = create_room(alice, name="Old")
    first = send_text(alice, old, "first")
    create_room(alice)
    body = {
        "lists": {"all": a_list(ranges=[[0, 0]], limit=1)},
        "room_subscriptions": {
            old: {"timeline_limit": 2, "required_state": [["m.room.name", ""]]},
            "!unknown:example.org": {"timeline_limit": 1, "required_state": []},
        },
    }
    resp = ss(alice, body)
    assert old not in list_ids(resp)
    assert old in resp["rooms"]
    assert "!unknown:example.org" not in resp["rooms"]
    assert event_ids(resp["rooms"][old])[-1] == first
    assert state_keys(resp["rooms"][old]) == {("m.room.name", "")}


def test_extensions(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    room_id = create_room(alice, preset="public_chat")
    join_room(bob, room_id)
    event_id = send_text(bob, room_id, "read me")
    status, _, _ = alice.client.put(f"{V3}/user/{q(alice.user_id)}/account_data/org.example.ad", {"k": 1})
    assert status == 200
    status, _, _ = bob.client.post(f"{room_path(room_id, 'receipt', 'm.read', event_id)}", {})
    assert status == 200
    extensions = {
        "to_device": {"enabled": True},
        "e2ee": {"enabled": True},
        "account_data": {"enabled": True},
        "receipts": {"enabled": True},
        "typing": {"enabled": True},
    }
    body = {"lists": {"all": a_list(limit=1)}, "extensions": extensions}
    first = ss(alice, body)
    ext = first["extensions"]
    assert "signed_curve25519" in ext["e2ee"]["device_one_time_keys_count"] or isinstance(
        ext["e2ee"]["device_one_time_keys_count"], dict
    )
    assert isinstance(ext["e2ee"]["device_unused_fallback_key_types"], list)
    assert {"type": "org.example.ad", "content": {"k": 1}} in ext["account_data"]["global"]
    receipt = ext["receipts"]["rooms"][room_id]
    assert receipt["type"] == "m.receipt"
    assert bob.user_id in receipt["content"][event_id]["m.read"]
    assert isinstance(ext["to_device"]["next_batch"], str)

    # To-device message, typing: arrive in the next response.
    txn = secrets.token_hex(4)
    status, _, _ = bob.client.put(
        f"{V3}/sendToDevice/org.example.ping/{txn}",
        {"messages": {alice.user_id: {alice.device_id: {"hello": "there"}}}},
    )
    assert status == 200
    status, _, _ = bob.client.put(
        f"{room_path(room_id, 'typing', bob.user_id)}", {"typing": True, "timeout": 30000}
    )
    assert status == 200
    second = ss(alice, body, pos=first["pos"], timeout=0)
    ext = second["extensions"]
    assert [m["content"] for m in ext["to_device"]["events"]] == [{"hello": "there"}]
    assert ext["typing"]["rooms"][room_id]["content"]["user_ids"] == [bob.user_id]
    # Acknowledged with `since`: not again.
    extensions["to_device"] = {"enabled": True, "since": ext["to_device"]["next_batch"]}
    third = ss(alice, body, pos=second["pos"], timeout=0)
    assert third["extensions"]["to_device"]["events"] == []


def test_notification_counts(hs: Homeserver) -> None:
    alice, bob = hs.register(), hs.register()
    room_id = create_room(alice, preset="public_chat")
    join_room(bob, room_id)
    send_text(bob, room_id, "ping")
    send_text(bob, room_id, f"hey {alice.localpart}")
    room = ss(alice, {"lists": {"all": a_list(limit=1)}})["rooms"][room_id]
    if hs.is_synapse:
        # Synapse always sends 0 (no unread counts in its sliding sync).
        assert room["notification_count"] == 0 and room["highlight_count"] == 0
    else:
        assert room["notification_count"] == 2


@pytest.mark.parametrize(
    "body",
    [
        {"lists": "all"},
        {"lists": {"all": {"ranges": [[0, 1]], "timeline_limit": "ten", "required_state": []}}},
        {"lists": {"all": {"ranges": [[0, 1]], "timeline_limit": 1, "required_state": [["m.room.name"]]}}},
        {"lists": {"all": {"ranges": "0-1", "timeline_limit": 1, "required_state": []}}},
        {"room_subscriptions": {"!a:b": "nope"}},
        {"extensions": {"to_device": {"enabled": True, "since": "soon"}}},
        {
            "lists": {
                "all": {
                    "ranges": [[0, 1]],
                    "timeline_limit": 1,
                    "required_state": [],
                    "filters": {"is_dm": 3},
                }
            }
        },
    ],
)
def test_bad_bodies(hs: Homeserver, body: dict[str, Any]) -> None:
    alice = hs.register()
    resp = ss(alice, body, status=400)
    # Synapse says M_BAD_JSON, or M_MISSING_PARAM for a required_state pair of the wrong length.
    assert resp["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_MISSING_PARAM")


def test_requires_auth(hs: Homeserver) -> None:
    status, body, _ = hs.client().post(SS, {})
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"


def test_bigger_timeline_limit_expands_timeline(hs: Homeserver) -> None:
    alice = hs.register()
    room_id = create_room(alice)
    sent = [send_text(alice, room_id, f"m{i}") for i in range(3)]
    body: dict[str, Any] = {"lists": {"all": a_list(limit=1)}}
    first = ss(alice, body)
    assert event_ids(first["rooms"][room_id]) == sent[-1:]
    # Opening the room: a subscription with a bigger timeline_limit gets the newest events again.
    body["room_subscriptions"] = {room_id: {"timeline_limit": 3, "required_state": []}}
    second = ss(alice, body, pos=first["pos"], timeout=0)
    room = second["rooms"][room_id]
    assert event_ids(room) == sent
    assert room.get("unstable_expanded_timeline") is True


def test_extensions_only_connection(hs: Homeserver) -> None:
    """Element X's encryption loop: its own conn_id, no lists, to_device and e2ee only."""
    alice, bob = hs.register(), hs.register()
    body = {
        "conn_id": "encryption",
        "extensions": {"to_device": {"enabled": True}, "e2ee": {"enabled": True}},
    }
    first = ss(alice, body)
    assert "lists" not in first and not first.get("rooms")
    assert "device_one_time_keys_count" in first["extensions"]["e2ee"]
    since = first["extensions"]["to_device"]["next_batch"]
    result: dict[str, Any] = {}
    waiter = threading.Thread(
        target=lambda: result.update(
            ss(
                alice,
                {
                    **body,
                    "extensions": {**body["extensions"], "to_device": {"enabled": True, "since": since}},
                },
                pos=first["pos"],
                timeout=20000,
            )
        )
    )
    waiter.start()
    status, _, _ = bob.client.put(
        f"{V3}/sendToDevice/org.example.ping/{secrets.token_hex(4)}",
        {"messages": {alice.user_id: {alice.device_id: {"n": 1}}}},
    )
    assert status == 200
    waiter.join(30)
    assert not waiter.is_alive()
    assert [m["content"] for m in result["extensions"]["to_device"]["events"]] == [{"n": 1}]


def test_thread_subscriptions_extension_not_served(hs: Homeserver) -> None:
    """The threads extension Synapse has (MSC4308 thread subscriptions) is behind its experimental
    `msc4306_enabled`; by default, as here, asking for it is accepted and answers nothing."""
    alice = hs.register()
    create_room(alice)
    ext = {"io.element.msc4308.thread_subscriptions": {"enabled": True, "limit": 10}}
    resp = ss(alice, {"lists": {"all": a_list(limit=1)}, "extensions": ext})
    assert "io.element.msc4308.thread_subscriptions" not in resp["extensions"]
    assert resp["lists"]["all"]["count"] == 1
