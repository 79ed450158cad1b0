"""GET /rooms/{roomId}/hierarchy over local rooms, on both engines."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from homeserver.services.spaces import HierarchyToken

from .helpers import auth, register

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


@pytest.fixture
async def client(any_engine_client: Any) -> Any:
    return any_engine_client


async def create_room(client: Any, token: str, **body: Any) -> str:
    body.setdefault("preset", "public_chat")
    resp = await client.post(f"{V3}/createRoom", json=body, headers=auth(token))
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["room_id"])


async def put_state(client: Any, token: str, room_id: str, etype: str, key: str, content: Any) -> None:
    resp = await client.put(
        f"{V3}/rooms/{room_id}/state/{etype}/{quote(key, safe='')}", json=content, headers=auth(token)
    )
    assert resp.status == 200, await resp.json()


async def add_child(client: Any, token: str, space: str, child: str, **extra: Any) -> None:
    await put_state(client, token, space, "m.space.child", child, {"via": ["test.local"], **extra})


async def hierarchy(client: Any, token: str, room_id: str, query: str = "") -> tuple[int, dict[str, Any]]:
    resp = await client.get(f"{V1}/rooms/{room_id}/hierarchy{query}", headers=auth(token))
    return resp.status, dict(await resp.json())


def room_ids(body: dict[str, Any]) -> list[str]:
    return [r["room_id"] for r in body["rooms"]]


async def _tree(client: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """space S (public) -> A (public, order "a"), T (public space, "b"), B (invite only, "c"),
    a room this server does not know, and S itself; T -> C (public)."""
    alice = await register(client)
    token = alice["access_token"]
    rooms = {
        "S": await create_room(client, token, name="Space", creation_content={"type": "m.space"}),
        "A": await create_room(client, token, name="A", topic="first"),
        "T": await create_room(client, token, name="Sub", creation_content={"type": "m.space"}),
        "B": await create_room(client, token, name="B", preset="private_chat"),
        "C": await create_room(client, token, name="C"),
    }
    await add_child(client, token, rooms["S"], rooms["A"], order="a")
    await add_child(client, token, rooms["S"], rooms["T"], order="b")
    await add_child(client, token, rooms["S"], rooms["B"], order="c")
    await add_child(client, token, rooms["S"], "!unknown:test.local")
    await add_child(client, token, rooms["S"], rooms["S"])  # a cycle is visited once
    await add_child(client, token, rooms["T"], rooms["C"], suggested=True)
    await put_state(client, token, rooms["T"], "m.space.parent", rooms["S"], {"via": ["test.local"]})
    return alice, rooms


async def test_hierarchy_walk(client: Any) -> None:
    alice, rooms = await _tree(client)
    bob = await register(client)

    status, body = await hierarchy(client, bob["access_token"], rooms["S"])
    assert status == 200, body
    # Depth first in child order; B is invite-only and the unknown room is skipped.
    assert room_ids(body) == [rooms["S"], rooms["A"], rooms["T"], rooms["C"]]
    assert "next_batch" not in body
    space = body["rooms"][0]
    assert space["room_type"] == "m.space"
    assert space["name"] == "Space"
    assert space["num_joined_members"] == 1
    assert space["world_readable"] is False and space["guest_can_join"] is False
    assert space["join_rule"] == "public"
    assert space["room_version"] == "11"
    children = space["children_state"]
    keys = [e["state_key"] for e in children]
    assert keys[:3] == [rooms["A"], rooms["T"], rooms["B"]]  # ordered ones first
    assert set(keys[3:]) == {"!unknown:test.local", rooms["S"]}
    first = children[0]
    assert set(first) == {"type", "state_key", "content", "sender", "origin_server_ts"}
    assert first["type"] == "m.space.child"
    assert first["content"] == {"via": ["test.local"], "order": "a"}
    assert first["sender"] == alice["user_id"]
    room_a = body["rooms"][1]
    assert room_a["children_state"] == []  # not a space
    assert room_a["topic"] == "first"
    assert "room_type" not in room_a

    # Alice is in B, so she sees it.
    status, body = await hierarchy(client, alice["access_token"], rooms["S"])
    assert room_ids(body) == [rooms["S"], rooms["A"], rooms["T"], rooms["C"], rooms["B"]]


async def test_hierarchy_child_order(client: Any) -> None:
    alice = await register(client)
    token = alice["access_token"]
    space = await create_room(client, token, creation_content={"type": "m.space"})
    first = await create_room(client, token)
    second = await create_room(client, token)
    third = await create_room(client, token)
    # Without a valid order: by the child event's timestamp (creation order here), after ordered ones.
    await add_child(client, token, space, third)
    await add_child(client, token, space, second, order="\u00e9")  # outside 0x20-0x7e: ignored
    await add_child(client, token, space, first, order="~")
    status, body = await hierarchy(client, token, space)
    assert status == 200
    assert room_ids(body) == [space, first, third, second]


async def test_hierarchy_depth_and_suggested(client: Any) -> None:
    alice, rooms = await _tree(client)
    token = alice["access_token"]
    assert room_ids((await hierarchy(client, token, rooms["S"], "?max_depth=0"))[1]) == [rooms["S"]]
    assert room_ids((await hierarchy(client, token, rooms["S"], "?max_depth=1"))[1]) == [
        rooms["S"],
        rooms["A"],
        rooms["T"],
        rooms["B"],
    ]
    # Only T's link to C is suggested; S's children are not.
    status, body = await hierarchy(client, token, rooms["S"], "?suggested_only=true")
    assert status == 200
    assert room_ids(body) == [rooms["S"]]
    assert body["rooms"][0]["children_state"] == []
    status, body = await hierarchy(client, token, rooms["T"], "?suggested_only=true")
    assert room_ids(body) == [rooms["T"], rooms["C"]]


async def test_hierarchy_pagination(client: Any) -> None:
    alice, rooms = await _tree(client)
    token = alice["access_token"]
    expected = [rooms["S"], rooms["A"], rooms["T"], rooms["C"], rooms["B"]]
    seen: list[str] = []
    since = None
    pages = 0
    while True:
        query = "?limit=2" + (f"&from={since}" if since else "")
        status, body = await hierarchy(client, token, rooms["S"], query)
        assert status == 200, body
        pages += 1
        seen.extend(room_ids(body))
        since = body.get("next_batch")
        if since is None:
            break
    assert seen == expected
    assert pages == 3

    status, body = await hierarchy(client, token, rooms["S"], "?limit=1")
    next_batch = body["next_batch"]
    for query, errcode in [
        (f"?from={next_batch}&max_depth=1", "M_INVALID_PARAM"),
        (f"?from={next_batch}&suggested_only=true", "M_INVALID_PARAM"),
        ("?from=garbage", "M_INVALID_PARAM"),
        ("?limit=0", "M_INVALID_PARAM"),
        ("?limit=x", "M_INVALID_PARAM"),
        ("?max_depth=-1", "M_INVALID_PARAM"),
        ("?suggested_only=maybe", "M_INVALID_PARAM"),
    ]:
        status, body = await hierarchy(client, token, rooms["S"], query)
        assert (status, body["errcode"]) == (400, errcode), (query, body)
    # A token for another room is refused too.
    other = HierarchyToken(rooms["T"], False, None, 1).encode()
    status, body = await hierarchy(client, token, rooms["S"], f"?from={other}")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_hierarchy_access(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    token = alice["access_token"]
    space = await create_room(client, token, preset="private_chat", creation_content={"type": "m.space"})
    child = await create_room(client, token, preset="private_chat")
    await add_child(client, token, space, child)

    resp = await client.get(f"{V1}/rooms/{space}/hierarchy")
    assert resp.status == 401
    status, body = await hierarchy(client, bob["access_token"], space)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await hierarchy(client, bob["access_token"], "!unknown:test.local")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await hierarchy(client, bob["access_token"], "not-a-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await hierarchy(client, token, space)
    assert room_ids(body) == [space, child]

    # An invite lets Bob see the space; the child room stays hidden until it is readable.
    resp = await client.post(
        f"{V3}/rooms/{space}/invite", json={"user_id": bob["user_id"]}, headers=auth(token)
    )
    assert resp.status == 200
    status, body = await hierarchy(client, bob["access_token"], space)
    assert status == 200, body
    assert room_ids(body) == [space]
    await put_state(
        client, token, child, "m.room.history_visibility", "", {"history_visibility": "world_readable"}
    )
    status, body = await hierarchy(client, bob["access_token"], space)
    assert room_ids(body) == [space, child]
    assert body["rooms"][1]["world_readable"] is True


async def test_hierarchy_restricted_and_knock(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    token = alice["access_token"]
    space = await create_room(client, token, creation_content={"type": "m.space"})
    restricted = await create_room(client, token, preset="private_chat", name="Members of the space")
    knock = await create_room(client, token, preset="private_chat", name="Knock")
    await put_state(
        client,
        token,
        restricted,
        "m.room.join_rules",
        "",
        {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]},
    )
    await put_state(client, token, knock, "m.room.join_rules", "", {"join_rule": "knock"})
    await add_child(client, token, space, restricted, order="1")
    await add_child(client, token, space, knock, order="2")

    status, body = await hierarchy(client, bob["access_token"], space)
    assert status == 200, body
    assert room_ids(body) == [space, knock]  # knockable; restricted needs the space's membership
    resp = await client.post(f"{V3}/join/{space}", headers=auth(bob["access_token"]))
    assert resp.status == 200
    status, body = await hierarchy(client, bob["access_token"], space)
    assert room_ids(body) == [space, restricted, knock]
    assert body["rooms"][1]["allowed_room_ids"] == [space]
    assert body["rooms"][1]["join_rule"] == "restricted"


async def test_hierarchy_ignores_removed_links(client: Any) -> None:
    alice = await register(client)
    token = alice["access_token"]
    space = await create_room(client, token, creation_content={"type": "m.space"})
    child = await create_room(client, token)
    await add_child(client, token, space, child)
    await put_state(client, token, space, "m.space.child", child, {})  # removed: no via
    status, body = await hierarchy(client, token, space)
    assert status == 200
    assert room_ids(body) == [space]
    assert body["rooms"][0]["children_state"] == []
