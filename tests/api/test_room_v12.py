"""Room version 12 over HTTP, on both engines: hash room ids, creators with infinite power, the
basic room flows, and upgrades 11 -> 12 and 12 -> 12."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import create_app_from_config

from .helpers import auth, register

V3 = "/_matrix/client/v3"
# "!" + URL-safe unpadded base64 of a SHA-256 (43 characters), no server name.
V12_ROOM_ID = re.compile(r"^![A-Za-z0-9_-]{43}$")


@pytest.fixture
async def client(aiohttp_client: Any, engine_config: Any) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config()))


async def call(client: Any, method: str, path: str, token: str, body: Any = None, status: int = 200) -> Any:
    resp = await client.request(method, f"{V3}{path}", json=body, headers=auth(token))
    data = await resp.json()
    assert resp.status == status, data
    return data


def room(room_id: str, *rest: str) -> str:
    return "/rooms/" + "/".join([quote(room_id, safe=""), *(quote(p, safe="") for p in rest)])


async def create_v12(client: Any, token: str, **body: Any) -> str:
    data = await call(client, "POST", "/createRoom", token, {"room_version": "12", **body})
    return str(data["room_id"])


async def test_capabilities_list_12_as_stable(client: Any) -> None:
    alice = await register(client)
    caps = await call(client, "GET", "/capabilities", alice["access_token"])
    versions = caps["capabilities"]["m.room_versions"]
    assert versions["available"]["12"] == "stable"
    assert versions["available"]["11"] == "stable"
    assert versions["default"] == "11"


async def test_v12_room_id_create_event_and_power_levels(client: Any) -> None:
    alice = await register(client)
    token = alice["access_token"]
    room_id = await create_v12(client, token, preset="public_chat", name="twelve")
    assert V12_ROOM_ID.match(room_id), room_id

    state = {(e["type"], e["state_key"]): e for e in await call(client, "GET", room(room_id, "state"), token)}
    create = state[("m.room.create", "")]
    # The room id is the create event's id with the "!" sigil.
    assert room_id == "!" + create["event_id"][1:]
    assert create["room_id"] == room_id  # clients get it in the client format
    assert create["content"]["room_version"] == "12"
    assert "creator" not in create["content"]
    levels = state[("m.room.power_levels", "")]["content"]
    assert alice["user_id"] not in levels["users"]
    assert levels["events"]["m.room.tombstone"] == 150 > levels["state_default"]
    assert state[("m.room.name", "")]["content"]["name"] == "twelve"

    joined = await call(client, "GET", "/joined_rooms", token)
    assert room_id in joined["joined_rooms"]
    members = await call(client, "GET", room(room_id, "joined_members"), token)
    assert list(members["joined"]) == [alice["user_id"]]


async def test_v12_basic_flows(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    carol = await register(client)
    a, b, c = alice["access_token"], bob["access_token"], carol["access_token"]
    room_id = await create_v12(client, a)  # private_chat: invite only

    # Invite, join, send, state.
    await call(client, "POST", f"/join/{quote(room_id, safe='')}", b, {}, status=403)
    await call(client, "POST", room(room_id, "invite"), a, {"user_id": bob["user_id"]})
    await call(client, "POST", f"/join/{quote(room_id, safe='')}", b, {})
    sent = await call(
        client, "PUT", room(room_id, "send", "m.room.message", "t1"), b, {"msgtype": "m.text", "body": "hi"}
    )
    await call(client, "PUT", room(room_id, "state", "m.room.topic", ""), a, {"topic": "v12"})
    topic = await call(client, "GET", room(room_id, "state", "m.room.topic", ""), b)
    assert topic == {"topic": "v12"}
    # Bob (level 0) may not set state at state_default (50).
    await call(client, "PUT", room(room_id, "state", "m.room.topic", ""), b, {"topic": "no"}, status=403)

    # /messages, newest first, includes the create event at the start of the room.
    msgs = await call(client, "GET", room(room_id, "messages") + "?dir=b&limit=50", a)
    types = [e["type"] for e in msgs["chunk"]]
    assert types[0] == "m.room.topic" and types[-1] == "m.room.create"
    assert sent["event_id"] in [e["event_id"] for e in msgs["chunk"]]
    assert all(e["room_id"] == room_id for e in msgs["chunk"])

    # Power levels: creators cannot be listed; others can be promoted up to (not beyond) anything.
    levels = await call(client, "GET", room(room_id, "state", "m.room.power_levels", ""), a)
    with_alice = {**levels, "users": {alice["user_id"]: 100}}
    await call(client, "PUT", room(room_id, "state", "m.room.power_levels", ""), a, with_alice, status=403)
    promoted = {**levels, "users": {bob["user_id"]: 100}}
    await call(client, "PUT", room(room_id, "state", "m.room.power_levels", ""), a, promoted)
    # Bob at 100 still cannot kick or ban the creator (infinite power).
    await call(client, "POST", room(room_id, "kick"), b, {"user_id": alice["user_id"]}, status=403)
    await call(client, "POST", room(room_id, "ban"), b, {"user_id": alice["user_id"]}, status=403)
    # The creator can demote Bob although he is at the top listed level.
    await call(client, "PUT", room(room_id, "state", "m.room.power_levels", ""), a, levels)

    # Carol: invite, then leave (rejecting); Bob leaves; kicked users can rejoin only if invited.
    await call(client, "POST", room(room_id, "invite"), a, {"user_id": carol["user_id"]})
    await call(client, "POST", room(room_id, "leave"), c, {})
    await call(client, "POST", room(room_id, "leave"), b, {})
    member = await call(client, "GET", room(room_id, "state", "m.room.member", bob["user_id"]), a)
    assert member["membership"] == "leave"
    await call(
        client,
        "PUT",
        room(room_id, "send", "m.room.message", "t2"),
        b,
        {"msgtype": "m.text", "body": "x"},
        status=403,
    )

    # Sync carries the room under its v12 id.
    sync = await call(client, "GET", "/sync", a)
    assert room_id in sync["rooms"]["join"]


async def test_v12_trusted_private_chat_and_additional_creators(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    carol = await register(client)
    a, b = alice["access_token"], bob["access_token"]
    room_id = await create_v12(
        client,
        a,
        preset="trusted_private_chat",
        invite=[bob["user_id"]],
        creation_content={"additional_creators": [carol["user_id"], bob["user_id"], alice["user_id"]]},
    )
    create = await call(client, "GET", room(room_id, "state", "m.room.create", ""), a)
    # Deduplicated, without the sender.
    assert create["additional_creators"] == [carol["user_id"], bob["user_id"]]
    levels = await call(client, "GET", room(room_id, "state", "m.room.power_levels", ""), a)
    assert levels["users"] == {}
    # Bob, an additional creator, has infinite power once joined: he may change the power levels,
    # and Alice cannot ban him.
    await call(client, "POST", f"/join/{quote(room_id, safe='')}", b, {})
    await call(client, "PUT", room(room_id, "state", "m.room.power_levels", ""), b, {**levels, "ban": 99})
    await call(client, "POST", room(room_id, "ban"), a, {"user_id": bob["user_id"]}, status=403)

    for bad in ("@nope", ["not a user"], [1]):
        await call(
            client, "POST", "/createRoom", a,
            {"room_version": "12", "creation_content": {"additional_creators": bad}}, status=400,
        )  # fmt: skip


async def test_upgrade_11_to_12_and_12_to_12(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    a, b = alice["access_token"], bob["access_token"]
    old = str(
        (await call(client, "POST", "/createRoom", a, {"room_version": "11", "preset": "public_chat"}))[
            "room_id"
        ]
    )
    await call(client, "POST", f"/join/{quote(old, safe='')}", b, {})
    await call(client, "PUT", room(old, "state", "m.room.topic", ""), a, {"topic": "carried"})

    upgraded = await call(client, "POST", room(old, "upgrade"), a, {"new_version": "12"})
    new = upgraded["replacement_room"]
    assert V12_ROOM_ID.match(new), new
    tombstone = await call(client, "GET", room(old, "state", "m.room.tombstone", ""), a)
    assert tombstone["replacement_room"] == new
    create = await call(client, "GET", room(new, "state", "m.room.create", ""), a)
    assert create["room_version"] == "12" and create["predecessor"]["room_id"] == old
    assert "additional_creators" not in create
    levels = await call(client, "GET", room(new, "state", "m.room.power_levels", ""), a)
    assert alice["user_id"] not in levels["users"]  # the upgrader is the creator now
    assert levels["events"]["m.room.tombstone"] > levels.get("state_default", 50)
    assert (await call(client, "GET", room(new, "state", "m.room.topic", ""), a)) == {"topic": "carried"}
    await call(
        client, "PUT", room(new, "send", "m.room.message", "u1"), a, {"msgtype": "m.text", "body": "in 12"}
    )
    await call(client, "POST", f"/join/{quote(new, safe='')}", b, {})

    # 12 -> 12 with an additional creator.
    again = await call(
        client,
        "POST",
        room(new, "upgrade"),
        a,
        {"new_version": "12", "additional_creators": [bob["user_id"]]},
    )
    newer = again["replacement_room"]
    assert V12_ROOM_ID.match(newer) and newer != new
    tombstone = await call(client, "GET", room(new, "state", "m.room.tombstone", ""), a)
    assert tombstone["replacement_room"] == newer
    create = await call(client, "GET", room(newer, "state", "m.room.create", ""), a)
    assert create["predecessor"]["room_id"] == new
    assert create["additional_creators"] == [bob["user_id"]]
    levels = await call(client, "GET", room(newer, "state", "m.room.power_levels", ""), a)
    assert alice["user_id"] not in levels["users"] and bob["user_id"] not in levels["users"]

    # Bad additional_creators are 400.
    await call(
        client,
        "POST",
        room(newer, "upgrade"),
        a,
        {"new_version": "12", "additional_creators": "x"},
        status=400,
    )

    # Bob, an additional creator of `newer`, may upgrade it (tombstone level 150 < infinite); Alice,
    # a creator of `newer` but not of the result, keeps admin rights there (100).
    await call(client, "POST", f"/join/{quote(newer, safe='')}", b, {})
    third = (await call(client, "POST", room(newer, "upgrade"), b, {"new_version": "12"}))["replacement_room"]
    levels = await call(client, "GET", room(third, "state", "m.room.power_levels", ""), b)
    assert levels["users"] == {alice["user_id"]: 100}
    # The tombstone level came from the v11 room (100, already above state_default): kept as is.
    assert levels["events"]["m.room.tombstone"] == 100


async def test_upgrade_12_to_11_keeps_the_creator_an_admin(client: Any) -> None:
    alice = await register(client)
    a = alice["access_token"]
    old = await create_v12(client, a)
    upgraded = await call(client, "POST", room(old, "upgrade"), a, {"new_version": "11"})
    new = upgraded["replacement_room"]
    assert ":" in new
    levels = await call(client, "GET", room(new, "state", "m.room.power_levels", ""), a)
    assert levels["users"][alice["user_id"]] == 100
    await call(client, "PUT", room(new, "state", "m.room.topic", ""), a, {"topic": "back in 11"})
