"""Rooms, messages and /sync through the in-process app."""

from __future__ import annotations

import asyncio
from typing import Any

from .helpers import auth, register


async def _create(client: Any, token: str, **body: Any) -> str:
    resp = await client.post("/_matrix/client/v3/createRoom", json=body, headers=auth(token))
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["room_id"])


async def _send(client: Any, token: str, room_id: str, txn: str, body: str = "hi") -> Any:
    return await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.text", "body": body},
        headers=auth(token),
    )


async def test_create_join_send_sync(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await register(client)
    bob = await register(client)
    room_id = await _create(client, alice["access_token"], preset="public_chat", name="General")
    resp = await client.post(f"/_matrix/client/v3/join/{room_id}", headers=auth(bob["access_token"]))
    assert resp.status == 200, await resp.json()

    resp = await client.get("/_matrix/client/v3/sync", headers=auth(bob["access_token"]))
    initial = await resp.json()
    assert resp.status == 200, initial
    joined = initial["rooms"]["join"][room_id]
    state_types = {e["type"] for e in joined["state"]["events"]} | {
        e["type"] for e in joined["timeline"]["events"]
    }
    assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= state_types
    since = initial["next_batch"]

    waiter = asyncio.ensure_future(
        client.get(f"/_matrix/client/v3/sync?since={since}&timeout=10000", headers=auth(bob["access_token"]))
    )
    await asyncio.sleep(0.05)
    resp = await _send(client, alice["access_token"], room_id, "t1")
    first = (await resp.json())["event_id"]
    retry = await _send(client, alice["access_token"], room_id, "t1")
    assert (await retry.json())["event_id"] == first

    resp = await waiter
    body = await resp.json()
    events = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [first]
    assert events[0]["content"]["body"] == "hi"


async def test_announcement_room(client: Any) -> None:
    admin = await register(client)
    member = await register(client)
    room_id = await _create(
        client,
        admin["access_token"],
        preset="public_chat",
        power_level_content_override={"events_default": 50},
    )
    await client.post(f"/_matrix/client/v3/join/{room_id}", headers=auth(member["access_token"]))
    resp = await _send(client, member["access_token"], room_id, "x")
    assert resp.status == 403
    assert (await resp.json())["errcode"] == "M_FORBIDDEN"
    resp = await _send(client, admin["access_token"], room_id, "y")
    assert resp.status == 200


async def test_dm_invite_in_sync(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    room_id = await _create(
        client, alice["access_token"], preset="trusted_private_chat", is_direct=True, invite=[bob["user_id"]]
    )
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(bob["access_token"]))
    body = await resp.json()
    invite = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    member = [e for e in invite if e["type"] == "m.room.member" and e["state_key"] == bob["user_id"]]
    assert member and member[0]["content"]["is_direct"] is True
    resp = await client.put(
        f"/_matrix/client/v3/user/{bob['user_id']}/account_data/m.direct",
        json={alice["user_id"]: [room_id]},
        headers=auth(bob["access_token"]),
    )
    assert resp.status == 200


async def test_per_room_display_name_via_member_state(client: Any) -> None:
    alice = await register(client)
    room_id = await _create(client, alice["access_token"], preset="private_chat")
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{alice['user_id']}",
        json={"membership": "join", "displayname": "Ms. Kim (3B)"},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    resp = await client.get(
        f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{alice['user_id']}",
        headers=auth(alice["access_token"]),
    )
    assert (await resp.json())["displayname"] == "Ms. Kim (3B)"
