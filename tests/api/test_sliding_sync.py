"""Sliding sync internals (homeserver/sync/sliding/): connection state, summary rows, cases
beyond Synapse (real unread counts, M_UNKNOWN_POS for every unusable pos). The black-box side is
synapse_compat_tests/test_sliding_sync.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.core.errors import MatrixError
from homeserver.core.tokens import StreamToken
from homeserver.sync.sliding.connections import ConnectionStore, ConnState, SentRoom, parse_pos
from homeserver.sync.sliding.service import _select

from ..conftest import services_of
from .ephemeral_helpers import NO_PRESENCE, V3, User, q

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


async def ss(
    user: User, body: dict[str, Any], pos: str | None = None, wait_ms: int = 0, expect: int = 200
) -> dict[str, Any]:
    params: dict[str, Any] = {"timeout": wait_ms}
    if pos is not None:
        params["pos"] = pos
    _, data = await user.request("POST", SS, body, expect, **params)
    return dict(data)


def one_list(limit: int = 3, state: list[list[str]] | None = None, end: int = 50) -> dict[str, Any]:
    return {"lists": {"all": {"ranges": [[0, end]], "timeline_limit": limit, "required_state": state or []}}}


async def test_unknown_pos_cases(hs: Any) -> None:
    alice = await User.new(hs)
    await alice.create_room()
    first = await ss(alice, one_list())
    for pos in ("x/s1", "1/garbage", "1/", "/s1_2", "99999999999999999999/s1", "s1_2_3"):
        err = await ss(alice, one_list(), pos=pos, expect=400)
        assert err["errcode"] == "M_UNKNOWN_POS", pos
    # A token ahead of the server (another server, a database reset).
    head = first["pos"].split("/")[0]
    err = await ss(alice, one_list(), pos=f"{head}/s999999999", expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"
    # Connection state gone (a new connection with the same conn_id, the device deleted):
    # M_UNKNOWN_POS, then the client starts over.
    assert (await ss(alice, one_list()))["lists"]["all"]["count"] == 1
    err = await ss(alice, one_list(), pos=first["pos"], expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"


async def test_positions_survive_a_restart(hs: Any) -> None:
    """Persisted: a process that never saw the connection resumes it from the database."""
    alice = await User.new(hs)
    room_id = await alice.create_room()
    first = await ss(alice, one_list(limit=1))
    services = services_of(hs)
    old = services.sliding_sync.connections
    services.sliding_sync.connections = ConnectionStore(old.store, services.clock.time_ms)
    await alice.send(room_id, "after the restart")
    second = await ss(alice, one_list(limit=1), pos=first["pos"])
    room = second["rooms"][room_id]
    assert "initial" not in room and room["num_live"] == 1
    assert room["timeline"][0]["content"]["body"] == "after the restart"
    # Logging out (the device is deleted) drops its connections.
    position = int(second["pos"].split("/")[0])
    assert await old.store.load_position(position, alice.user_id, alice.device_id, "") is not None
    await alice.post(f"{V3}/logout", {})
    assert await old.store.load_position(position, alice.user_id, alice.device_id, "") is None


async def test_connections_are_separate_per_conn_id(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    a = await ss(alice, {**one_list(), "conn_id": "a"})
    b = await ss(alice, {**one_list(), "conn_id": "b"})
    await alice.send(room_id, "news")
    got_a = await ss(alice, {**one_list(), "conn_id": "a"}, pos=a["pos"])
    assert room_id in got_a["rooms"]
    # b's position is not a's connection.
    err = await ss(alice, {**one_list(), "conn_id": "a"}, pos=b["pos"], expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"
    got_b = await ss(alice, {**one_list(), "conn_id": "b"}, pos=b["pos"])
    assert room_id in got_b["rooms"]


async def test_unread_counts_change_resends_room(hs: Any) -> None:
    alice, bob = await User.new(hs), await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    await bob.send(room_id, "one")
    last = await bob.send(room_id, "two")
    first = await ss(alice, one_list())
    assert first["rooms"][room_id]["notification_count"] == 2
    await alice.post(f"{V3}/rooms/{q(room_id)}/receipt/m.read/{q(last)}", {})
    second = await ss(alice, one_list(), pos=first["pos"])
    room = second["rooms"][room_id]
    assert room["notification_count"] == 0
    assert "timeline" not in room  # nothing new to show, only the count


async def test_lazy_members_not_repeated(hs: Any) -> None:
    alice, bob = await User.new(hs), await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    await bob.send(room_id, "hello")
    body = one_list(limit=1, state=[["m.room.member", "$LAZY"]])
    first = await ss(alice, body)
    members = [e["state_key"] for e in first["rooms"][room_id]["required_state"]]
    assert members == [bob.user_id]
    await bob.send(room_id, "again")
    second = await ss(alice, body, pos=first["pos"])
    assert "required_state" not in second["rooms"][room_id]
    # A new sender's member event comes.
    carol = await User.new(hs)
    await carol.join(room_id)
    await carol.send(room_id, "carol here")
    third = await ss(alice, one_list(limit=1, state=[["m.room.member", "$LAZY"]]), pos=second["pos"])
    sent = {e["state_key"] for e in third["rooms"][room_id].get("required_state", [])}
    assert carol.user_id in sent and bob.user_id not in sent


async def test_left_room_sent_once_then_dropped(hs: Any) -> None:
    alice, bob = await User.new(hs), await User.new(hs)
    room_id = await bob.create_room()
    await alice.join(room_id)
    first = await ss(alice, one_list())
    await alice.leave(room_id)
    await bob.send(room_id, "after alice left")
    second = await ss(alice, one_list(), pos=first["pos"])
    room = second["rooms"][room_id]
    assert room["timeline"][-1]["content"]["membership"] == "leave"
    assert room_id in second["lists"]["all"]["ops"][0]["room_ids"]
    third = await ss(alice, one_list(), pos=second["pos"])
    assert third["lists"]["all"]["count"] == 0


async def test_summary_rows_follow_renames_and_bumps(hs: Any) -> None:
    alice = await User.new(hs)
    r1, r2 = await alice.create_room(name="one"), await alice.create_room(name="two")
    first = await ss(alice, one_list(end=0))
    assert first["lists"]["all"]["ops"][0]["room_ids"] == [r2]
    summaries = services_of(hs).room_summaries
    assert {r1, r2} <= set(summaries._rooms)
    await alice.put(f"{V3}/rooms/{q(r1)}/state/m.room.name/", {"name": "renamed"})
    await alice.send(r1, "bump")
    second = await ss(alice, one_list(end=0), pos=first["pos"])
    assert second["lists"]["all"]["ops"][0]["room_ids"] == [r1]
    assert second["rooms"][r1]["name"] == "renamed"
    # A topic change does not bump (Synapse's bump event types); a message does.
    await alice.put(f"{V3}/rooms/{q(r2)}/state/m.room.topic/", {"topic": "t"})
    same = await ss(alice, one_list(end=0), pos=second["pos"])
    assert same["lists"]["all"]["ops"][0]["room_ids"] == [r1]
    await alice.send(r2, "two is newer")
    third = await ss(alice, one_list(end=0), pos=second["pos"])
    assert third["lists"]["all"]["ops"][0]["room_ids"] == [r2]


async def test_pos_and_timeout_in_body(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    status, first = await alice.request("POST", SS, one_list())
    await alice.send(room_id, "x")
    status, second = await alice.request("POST", SS, {**one_list(), "pos": first["pos"], "timeout": 0})
    assert status == 200 and room_id in second["rooms"] and "initial" not in second["rooms"][room_id]
    status, err = await alice.request("POST", SS, {**one_list(), "timeout": "soon"}, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_long_poll_times_out_with_the_same_pos(hs: Any) -> None:
    alice = await User.new(hs)
    await alice.create_room()
    first = await ss(alice, one_list())
    quiet = await ss(alice, one_list(), pos=first["pos"], wait_ms=300)
    assert quiet["pos"] == first["pos"] and quiet["rooms"] == {}
    assert quiet["lists"]["all"]["count"] == 1


async def test_versions_advertises(hs: Any) -> None:
    resp = await hs.get("/_matrix/client/versions")
    assert (await resp.json())["unstable_features"]["org.matrix.simplified_msc3575"] is True


def test_select_required_state() -> None:
    state = {
        ("m.room.name", ""): "$n",
        ("m.room.member", "@a:x"): "$a",
        ("m.room.member", "@b:x"): "$b",
        ("m.space.child", "!c:x"): "$c",
    }
    assert _select({("m.room.member", "$ME")}, state, "@a:x", set()) == {("m.room.member", "@a:x")}
    assert _select({("m.room.member", "$LAZY")}, state, "@a:x", {"@b:x", "@z:x"}) == {
        ("m.room.member", "@b:x")
    }
    assert _select({("m.space.child", "*")}, state, "@a:x", set()) == {("m.space.child", "!c:x")}
    assert _select({("*", "*")}, state, "@a:x", set()) == set(state)
    assert _select({("*", "")}, state, "@a:x", set()) == {("m.room.name", "")}
    assert _select({("m.room.topic", "")}, state, "@a:x", set()) == set()


async def test_connection_store_positions(hs: Any) -> None:
    services = services_of(hs)
    store = ConnectionStore(services.sliding_sync.connections.store, services.clock.time_ms)
    key = ("@a:x", "DEV", "")
    p1 = await store.save(key, ConnState(), None)
    room = SentRoom("join", 5, frozenset({("m.room.name", "")}), 1, ("n", None, 1, 0, (), False), (0, 0))
    p2 = await store.save(key, ConnState({"!r:x": room}, {"all": (1, (((0, 1), ("!r:x",)),))}), p1)
    assert await store.save(key, ConnState({"!r:x": room}, {"all": (1, (((0, 1), ("!r:x",)),))}), p1) == p2
    assert (await store.load(key, p2)).rooms["!r:x"] == room
    with pytest.raises(MatrixError) as err:
        await store.load(key, p1)  # dropped once the client used p2
    assert err.value.errcode == "M_UNKNOWN_POS"
    # Read back from the database: the same state, tuples and all.
    fresh = ConnectionStore(store.store, services.clock.time_ms)
    loaded = await fresh.load(key, p2)
    assert loaded == ConnState({"!r:x": room}, {"all": (1, (((0, 1), ("!r:x",)),))})
    assert parse_pos("3/s5_1") == (3, StreamToken(events=5, account_data=1))
