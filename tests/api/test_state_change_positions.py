"""The last state-change position per room (issue #20): a sync woken by messages reads no state
deltas, and a state change after a sync's timeline start is still rolled back exactly as before."""

from __future__ import annotations

import json
from typing import Any

from homeserver.events import constants as c

from ..conftest import services_of
from .helpers import auth, register
from .test_sync_batched_reads import _room, _send, _sync


async def _rename(client: Any, user: dict[str, Any], room_id: str, name: str) -> None:
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{user['user_id']}",
        json={"membership": "join", "displayname": name},
        headers=auth(user["access_token"]),
    )
    assert resp.status == 200, await resp.json()


async def test_position_follows_state_changes_and_survives_reload(any_engine_client: Any) -> None:
    client = any_engine_client
    services = services_of(client)
    alice = await register(client)
    bob = await register(client, "bob")
    room_id = await _room(client, alice, bob)
    snapshot = services.state.cached(room_id)
    assert snapshot is not None
    join_pos = snapshot.last_state_stream
    assert join_pos == snapshot.last_stream  # bob's join was the latest event and a state change

    await _send(client, alice, room_id, "m1", "hello")
    snapshot = services.state.cached(room_id)
    assert snapshot is not None
    assert snapshot.last_stream > join_pos
    assert snapshot.last_state_stream == join_pos  # a message is no state change

    await _rename(client, bob, room_id, "Bob B")
    snapshot = services.state.cached(room_id)
    assert snapshot is not None
    assert snapshot.last_state_stream == snapshot.last_stream > join_pos
    renamed_at = snapshot.last_state_stream
    await _send(client, alice, room_id, "m2", "again")

    # Loaded from the database (a restart, an eviction): the same position.
    services.state.evict(room_id)
    reloaded = await services.state.get(room_id)
    assert reloaded is not None
    assert reloaded.last_state_stream == renamed_at
    assert not reloaded.state_unchanged_since(renamed_at - 1)
    assert reloaded.state_unchanged_since(renamed_at)


async def test_state_at_position_without_deltas_after_it(any_engine_client: Any) -> None:
    client = any_engine_client
    services = services_of(client)
    alice = await register(client)
    bob = await register(client, "bob")
    room_id = await _room(client, alice, bob)
    await _send(client, alice, room_id, "m1", "one")
    snapshot = services.state.cached(room_id)
    assert snapshot is not None
    position = snapshot.last_stream
    await _send(client, alice, room_id, "m2", "two")
    snapshot = services.state.cached(room_id)
    assert snapshot is not None and snapshot.last_stream > position

    # Only messages after `position`: the current state is the answer, read from memory.
    async def no_query(*args: Any) -> Any:
        raise AssertionError("state_deltas_after read although no state changed")

    real = services.rooms.state_deltas_after
    services.rooms.state_deltas_after = no_query  # type: ignore[method-assign]
    try:
        at = await services.state.state_ids_at(snapshot, position)
        members = await services.state.member_ids_at(snapshot, position, {bob["user_id"]})
    finally:
        services.rooms.state_deltas_after = real  # type: ignore[method-assign]
    assert at == {k: e.event_id for k, e in snapshot.state.items()}
    assert members == {(c.MEMBER, bob["user_id"]): snapshot.state[(c.MEMBER, bob["user_id"])].event_id}

    # A state change after `position` is rolled back: the state there is the old one.
    old_member = snapshot.state[(c.MEMBER, bob["user_id"])].event_id
    await _rename(client, bob, room_id, "Bob B")
    snapshot = services.state.cached(room_id)
    assert snapshot is not None
    assert snapshot.state[(c.MEMBER, bob["user_id"])].event_id != old_member
    at = await services.state.state_ids_at(snapshot, position)
    assert at[(c.MEMBER, bob["user_id"])] == old_member
    members = await services.state.member_ids_at(snapshot, position, {bob["user_id"]})
    assert members == {(c.MEMBER, bob["user_id"]): old_member}


async def test_lazy_sync_sees_member_change_after_timeline_start(any_engine_client: Any) -> None:
    """The timeline shows only messages, so carol's rename after her message is not in it: the
    state section must carry her member event as it was at the timeline start (the old name),
    which needs the rename rolled back."""
    client = any_engine_client
    alice = await register(client)
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await _room(client, alice, bob)
    resp = await client.post(f"/_matrix/client/v3/join/{room_id}", headers=auth(carol["access_token"]))
    assert resp.status == 200
    await _rename(client, carol, room_id, "Carol Old")
    # Reloaded, so the room's position is known from the database (not None) from here on.
    services = services_of(client)
    services.state.evict(room_id)
    assert (await services.state.get(room_id)) is not None
    flt = json.dumps(
        {"room": {"state": {"lazy_load_members": True}, "timeline": {"types": ["m.room.message"]}}}
    )
    status, first = await _sync(client, bob["access_token"], flt=flt)
    assert status == 200, first
    await _send(client, alice, room_id, "a1", "before")  # the timeline starts here
    await _send(client, carol, room_id, "c1", "hi")
    await _rename(client, carol, room_id, "Carol New")
    status, incr = await _sync(client, bob["access_token"], since=first["next_batch"], flt=flt)
    assert status == 200, incr
    room = incr["rooms"]["join"][room_id]
    assert [e["content"]["body"] for e in room["timeline"]["events"]] == ["before", "hi"]
    members = {e["state_key"]: e for e in room["state"]["events"] if e["type"] == c.MEMBER}
    assert members[carol["user_id"]]["content"]["displayname"] == "Carol Old"
