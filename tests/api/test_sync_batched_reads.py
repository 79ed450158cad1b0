"""Sync paths that batch or cache reads (issue #20): the answers must be exactly those of the
one-by-one paths. Unread counts of many rooms come from one query on an initial sync; a parsed
inline filter is reused by later requests with the same text; a lazy incremental sync looks up only
the senders' member events."""

from __future__ import annotations

import json
from typing import Any

from homeserver.sync.unread import WARM_MIN_ROOMS

from ..conftest import services_of
from .helpers import auth, register


async def _sync(client: Any, token: str, since: str | None = None, flt: str | None = None) -> Any:
    params = {"timeout": "0"}
    if since:
        params["since"] = since
    if flt:
        params["filter"] = flt
    resp = await client.get("/_matrix/client/v3/sync", params=params, headers=auth(token))
    body = await resp.json()
    return resp.status, body


async def _room(client: Any, owner: dict[str, Any], joiner: dict[str, Any]) -> str:
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(owner["access_token"])
    )
    room_id = str((await resp.json())["room_id"])
    resp = await client.post(f"/_matrix/client/v3/join/{room_id}", headers=auth(joiner["access_token"]))
    assert resp.status == 200, await resp.json()
    return room_id


async def _send(client: Any, user: dict[str, Any], room_id: str, txn: str, body: str) -> str:
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.text", "body": body},
        headers=auth(user["access_token"]),
    )
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["event_id"])


def _counts(body: dict[str, Any], room_id: str) -> dict[str, int]:
    return dict(body["rooms"]["join"][room_id]["unread_notifications"])


async def test_initial_sync_counts_of_many_rooms(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await register(client)
    bob = await register(client, "bob")
    rooms = [await _room(client, alice, bob) for _ in range(WARM_MIN_ROOMS + 2)]
    last: dict[str, str] = {}
    for i, room_id in enumerate(rooms):
        for m in range(i % 4):  # 0..3 messages; the third one mentions bob (a highlight)
            text = "bob?" if m == 2 else f"hello {m}"
            last[room_id] = await _send(client, alice, room_id, f"t{i}-{m}", text)
    status, sync = await _sync(client, bob["access_token"])
    assert status == 200, sync
    for i, room_id in enumerate(rooms):
        n = i % 4
        assert _counts(sync, room_id) == {"notification_count": n, "highlight_count": 1 if n == 3 else 0}

    # The counts read in one go are kept up to date like those read one by one.
    await _send(client, alice, rooms[0], "later", "one more")
    read_room = rooms[3]
    resp = await client.post(
        f"/_matrix/client/v3/rooms/{read_room}/receipt/m.read/{last[read_room]}",
        json={},
        headers=auth(bob["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    status, incr = await _sync(client, bob["access_token"], since=sync["next_batch"])
    assert status == 200, incr
    assert _counts(incr, rooms[0]) == {"notification_count": 1, "highlight_count": 0}
    assert _counts(incr, read_room) == {"notification_count": 0, "highlight_count": 0}
    status, again = await _sync(client, bob["access_token"])
    assert status == 200, again
    assert _counts(again, rooms[0])["notification_count"] == 1
    assert _counts(again, read_room)["notification_count"] == 0
    assert _counts(again, rooms[2])["notification_count"] == 2
    # Alice's own messages never count for her.
    status, mine = await _sync(client, alice["access_token"])
    assert all(_counts(mine, r)["notification_count"] == 0 for r in rooms)


async def test_inline_filter_reused_and_bad_ones_still_rejected(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await register(client)
    bob = await register(client, "bob")
    room_a = await _room(client, alice, bob)
    room_b = await _room(client, alice, bob)
    only_a = json.dumps({"room": {"rooms": [room_a]}})
    only_b = json.dumps({"room": {"rooms": [room_b]}})
    for flt, want in ((only_a, room_a), (only_b, room_b), (only_a, room_a), (only_b, room_b)):
        status, body = await _sync(client, bob["access_token"], flt=flt)
        assert status == 200, body
        assert set(body["rooms"]["join"]) == {want}
    bad = json.dumps({"room": {"timeline": {"limit": "ten"}}})
    for _ in range(2):
        status, body = await _sync(client, bob["access_token"], flt=bad)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
    for _ in range(2):
        status, body = await _sync(client, bob["access_token"], flt="{not json")
        assert status == 400 and body["errcode"] == "M_NOT_JSON", body


async def test_lazy_incremental_sync_sends_only_new_senders(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await register(client)
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await _room(client, alice, bob)
    resp = await client.post(f"/_matrix/client/v3/join/{room_id}", headers=auth(carol["access_token"]))
    assert resp.status == 200
    lazy = json.dumps({"room": {"state": {"lazy_load_members": True}}})
    status, first = await _sync(client, bob["access_token"], flt=lazy)
    assert status == 200, first
    # carol renames herself, then speaks; the rename is in the timeline, not in state
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{carol['user_id']}",
        json={"membership": "join", "displayname": "Carol C"},
        headers=auth(carol["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    await _send(client, carol, room_id, "c1", "hi")
    await _send(client, alice, room_id, "a1", "hello")
    status, incr = await _sync(client, bob["access_token"], since=first["next_batch"], flt=lazy)
    assert status == 200, incr
    room = incr["rooms"]["join"][room_id]
    state_members = {e["state_key"]: e for e in room["state"]["events"] if e["type"] == "m.room.member"}
    timeline_members = [e["state_key"] for e in room["timeline"]["events"] if e["type"] == "m.room.member"]
    assert timeline_members == [carol["user_id"]]
    # alice's member event: sent only if the first sync did not already carry it
    first_room = first["rooms"]["join"][room_id]
    first_events = first_room["state"]["events"] + first_room["timeline"]["events"]
    alice_known = any(
        e["type"] == "m.room.member" and e["state_key"] == alice["user_id"] for e in first_events
    )
    assert (alice["user_id"] in state_members) is (not alice_known)
    assert carol["user_id"] not in state_members


async def test_initial_sync_histories_loaded_at_once_same_timelines(any_engine_client: Any) -> None:
    """An initial sync loads the history visibility and membership histories and the state deltas
    after the timeline starts of all its rooms in one go (VisibilityService.prefetch,
    StateService.prefetch_deltas); timelines and state are those of the room-by-room path, also
    where visibility changed, where the user left and came back, and where the state changed
    inside the timeline."""
    client = any_engine_client
    services = services_of(client)
    alice = await register(client)
    bob = await register(client, "bob")

    async def set_visibility(room_id: str, value: str) -> None:
        resp = await client.put(
            f"/_matrix/client/v3/rooms/{room_id}/state/m.room.history_visibility",
            json={"history_visibility": value},
            headers=auth(alice["access_token"]),
        )
        assert resp.status == 200, await resp.json()

    async def membership(user: dict[str, Any], room_id: str, action: str) -> None:
        resp = await client.post(
            f"/_matrix/client/v3/rooms/{room_id}/{action}", json={}, headers=auth(user["access_token"])
        )
        assert resp.status == 200, await resp.json()

    plain = await _room(client, alice, bob)
    await _send(client, alice, plain, "p0", "plain")
    # "joined" before bob joins: the earlier messages are hidden from him.
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(alice["access_token"])
    )
    joined_only = str((await resp.json())["room_id"])
    await set_visibility(joined_only, "joined")
    await _send(client, alice, joined_only, "j0", "before bob")
    await membership(bob, joined_only, "join")
    await _send(client, alice, joined_only, "j1", "after bob")
    # Visibility changed while bob was away: he left, "joined" was set, he came back.
    churn = await _room(client, alice, bob)
    await _send(client, alice, churn, "c0", "bob was here")
    await membership(bob, churn, "leave")
    await set_visibility(churn, "joined")
    await _send(client, alice, churn, "c1", "bob was away")
    await membership(bob, churn, "join")
    await _send(client, alice, churn, "c2", "bob is back")
    # A rename inside the timeline: the state section shows the name at the timeline start.
    for name in ("first name", "second name"):
        resp = await client.put(
            f"/_matrix/client/v3/rooms/{plain}/state/m.room.name",
            json={"name": name},
            headers=auth(alice["access_token"]),
        )
        assert resp.status == 200, await resp.json()
        for i in range(6):
            await _send(client, alice, plain, f"{name}{i}", f"{name} {i}")
    rooms = [plain, joined_only, churn]

    def state(body: dict[str, Any]) -> dict[str, list[str]]:
        return {r: sorted(e["event_id"] for e in body["rooms"]["join"][r]["state"]["events"]) for r in rooms}

    def name_at_start(body: dict[str, Any]) -> str:
        events = body["rooms"]["join"][plain]["state"]["events"]
        return str(next(e["content"]["name"] for e in events if e["type"] == "m.room.name"))

    def timelines(body: dict[str, Any]) -> dict[str, list[str]]:
        return {r: [e["event_id"] for e in body["rooms"]["join"][r]["timeline"]["events"]] for r in rooms}

    def bodies(body: dict[str, Any], room_id: str) -> list[str]:
        events = body["rooms"]["join"][room_id]["timeline"]["events"]
        return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]

    calls: list[tuple[str, str, str]] = []
    one_by_one = services.visibility.rooms.state_key_history

    async def counted(room_id: str, type: str, state_key: str) -> Any:
        calls.append((room_id, type, state_key))
        return await one_by_one(room_id, type, state_key)

    delta_reads: list[str] = []
    deltas_after = services.state.rooms.state_deltas_after

    async def counted_deltas(room_id: str, after: int) -> Any:
        delta_reads.append(room_id)
        return await deltas_after(room_id, after)

    services.visibility.rooms.state_key_history = counted  # type: ignore[method-assign]
    services.state.rooms.state_deltas_after = counted_deltas  # type: ignore[method-assign]
    services.visibility._histories.clear()
    services.state._prefetched.clear()
    status, batched = await _sync(client, bob["access_token"])
    assert status == 200, batched
    assert calls == [] and delta_reads == []  # every history and delta came from the batches
    assert name_at_start(batched) == "first name"
    assert bodies(batched, joined_only) == ["after bob"]
    assert bodies(batched, churn) == ["bob was here", "bob is back"]

    services.visibility._histories.clear()
    services.state._prefetched.clear()
    services.visibility.prefetch = _no_prefetch  # type: ignore[method-assign]
    services.state.prefetch_deltas = _no_prefetch  # type: ignore[method-assign]
    status, single = await _sync(client, bob["access_token"])
    assert status == 200, single
    assert len(calls) == 2 * len(rooms) and delta_reads  # the room-by-room path
    assert timelines(single) == timelines(batched)
    assert state(single) == state(batched)


async def _no_prefetch(*args: Any) -> None:
    return None
