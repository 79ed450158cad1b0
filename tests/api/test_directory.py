"""Room aliases and the published room directory, on both engines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import create_app_from_config
from homeserver.services.directory import PublicRoomsToken

from .helpers import auth, register

V3 = "/_matrix/client/v3"
ALLOW_PUBLISH = {"room_list_publication_rules": [{"action": "allow"}]}

ClientFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def make_client(aiohttp_client: Any, engine_config: Any) -> ClientFactory:
    """An in-process client per engine with extra config (publishing allowed unless overridden)."""

    async def make(**extra: Any) -> Any:
        return await aiohttp_client(create_app_from_config(engine_config(**{**ALLOW_PUBLISH, **extra})))

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> Any:
    return await make_client()


def alias_url(alias: str) -> str:
    return f"{V3}/directory/room/{quote(alias, safe='')}"


async def create_room(client: Any, token: str, **body: Any) -> str:
    body.setdefault("preset", "public_chat")
    resp = await client.post(f"{V3}/createRoom", json=body, headers=auth(token))
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["room_id"])


async def join(client: Any, token: str, room_id: str) -> None:
    resp = await client.post(f"{V3}/join/{room_id}", headers=auth(token))
    assert resp.status == 200, await resp.json()


async def put_state(client: Any, token: str, room_id: str, etype: str, content: dict[str, Any]) -> Any:
    return await client.put(f"{V3}/rooms/{room_id}/state/{etype}", json=content, headers=auth(token))


async def set_alias(client: Any, token: str, alias: str, room_id: str) -> Any:
    return await client.put(alias_url(alias), json={"room_id": room_id}, headers=auth(token))


async def publish(client: Any, token: str, room_id: str, visibility: str = "public") -> Any:
    return await client.put(
        f"{V3}/directory/list/room/{room_id}", json={"visibility": visibility}, headers=auth(token)
    )


async def expect_error(resp: Any, status: int, errcode: str) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert body["errcode"] == errcode, body
    return dict(body)


# -- aliases ----------------------------------------------------------------------------------------


async def test_alias_lifecycle(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    room_id = await create_room(client, alice["access_token"])
    alias = "#lobby:test.local"

    resp = await set_alias(client, alice["access_token"], alias, room_id)
    assert resp.status == 200, await resp.json()
    assert await resp.json() == {}

    resp = await client.get(alias_url(alias))  # no auth needed
    assert resp.status == 200
    assert await resp.json() == {"room_id": room_id, "servers": ["test.local"]}
    # r0 and an unescaped '#' in the path (%23 is what clients send) work too
    resp = await client.get("/_matrix/client/r0/directory/room/%23lobby:test.local")
    assert (await resp.json())["room_id"] == room_id

    await expect_error(await set_alias(client, alice["access_token"], alias, room_id), 409, "M_UNKNOWN")

    resp = await client.get(f"{V3}/rooms/{room_id}/aliases", headers=auth(alice["access_token"]))
    assert resp.status == 200
    assert await resp.json() == {"aliases": [alias]}
    await expect_error(
        await client.get(f"{V3}/rooms/{room_id}/aliases", headers=auth(bob["access_token"])),
        403,
        "M_FORBIDDEN",
    )

    resp = await client.delete(alias_url(alias), headers=auth(alice["access_token"]))
    assert resp.status == 200, await resp.json()
    await expect_error(await client.get(alias_url(alias)), 404, "M_NOT_FOUND")
    await expect_error(
        await client.delete(alias_url(alias), headers=auth(alice["access_token"])), 404, "M_NOT_FOUND"
    )
    resp = await client.get(f"{V3}/rooms/{room_id}/aliases", headers=auth(alice["access_token"]))
    assert await resp.json() == {"aliases": []}


async def test_alias_servers_lists_joined_servers(client: Any) -> None:
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"], room_alias_name="town")
    resp = await client.get(alias_url("#town:test.local"))
    assert await resp.json() == {"room_id": room_id, "servers": ["test.local"]}


@pytest.mark.parametrize(
    ("alias", "errcode"),
    [
        ("nohash:test.local", "M_INVALID_PARAM"),
        ("#nocolon", "M_INVALID_PARAM"),
        ("#:test.local", "M_INVALID_PARAM"),
        ("#two words:test.local", "M_INVALID_PARAM"),
        ("#tab\there:test.local", "M_INVALID_PARAM"),
        ("#bad:not a server", "M_INVALID_PARAM"),
        ("#elsewhere:other.example", "M_INVALID_PARAM"),  # not ours
        ("#" + "x" * 250 + ":test.local", "M_INVALID_PARAM"),  # over 255 bytes
    ],
)
async def test_set_alias_rejects_bad_aliases(client: Any, alias: str, errcode: str) -> None:
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"])
    await expect_error(await set_alias(client, alice["access_token"], alias, room_id), 400, errcode)


async def test_set_alias_errors(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    room_id = await create_room(client, alice["access_token"])
    url = alias_url("#errors:test.local")

    await expect_error(await client.put(url, json={"room_id": room_id}), 401, "M_MISSING_TOKEN")
    await expect_error(
        await client.put(url, json={}, headers=auth(alice["access_token"])), 400, "M_MISSING_PARAM"
    )
    await expect_error(
        await client.put(url, json={"room_id": 5}, headers=auth(alice["access_token"])), 400, "M_BAD_JSON"
    )
    await expect_error(
        await client.put(url, data=b"{", headers=auth(alice["access_token"])), 400, "M_NOT_JSON"
    )
    await expect_error(
        await client.put(url, json={"room_id": "not-a-room"}, headers=auth(alice["access_token"])),
        400,
        "M_INVALID_PARAM",
    )
    await expect_error(
        await client.put(url, json={"room_id": "!unknown:test.local"}, headers=auth(alice["access_token"])),
        400,
        "M_UNKNOWN",
    )
    # Bob is not in the room (require_membership_for_aliases defaults to true).
    await expect_error(
        await set_alias(client, bob["access_token"], "#errors:test.local", room_id), 403, "M_FORBIDDEN"
    )
    await join(client, bob["access_token"], room_id)
    resp = await set_alias(client, bob["access_token"], "#errors:test.local", room_id)
    assert resp.status == 200, await resp.json()


async def test_server_admin_creates_alias_without_membership(client: Any) -> None:
    alice = await register(client)
    admin = await register(client, admin=True)
    room_id = await create_room(client, alice["access_token"], preset="private_chat")
    resp = await set_alias(client, admin["access_token"], "#adminmade:test.local", room_id)
    assert resp.status == 200, await resp.json()


async def test_membership_not_required_when_configured(make_client: ClientFactory) -> None:
    client = await make_client(require_membership_for_aliases=False)
    alice = await register(client)
    bob = await register(client)
    room_id = await create_room(client, alice["access_token"])
    resp = await set_alias(client, bob["access_token"], "#outsider:test.local", room_id)
    assert resp.status == 200, await resp.json()


async def test_alias_creation_rules(make_client: ClientFactory) -> None:
    client = await make_client(
        alias_creation_rules=[
            {"user_id": "@boss:test.local", "action": "allow"},
            {"alias": "#team-*", "action": "allow"},
            {"action": "deny"},
        ]
    )
    boss = await register(client, "boss")
    staff = await register(client)
    room_id = await create_room(client, boss["access_token"])
    await join(client, staff["access_token"], room_id)
    resp = await set_alias(client, staff["access_token"], "#random:test.local", room_id)
    body = await expect_error(resp, 403, "M_FORBIDDEN")
    assert "alias" in body["error"]
    assert (await set_alias(client, staff["access_token"], "#team-red:test.local", room_id)).status == 200
    assert (await set_alias(client, boss["access_token"], "#random:test.local", room_id)).status == 200


async def test_get_alias_errors(client: Any) -> None:
    await expect_error(await client.get(alias_url("#nothing:test.local")), 404, "M_NOT_FOUND")
    await expect_error(await client.get(alias_url("nohash")), 400, "M_INVALID_PARAM")
    # Remote aliases are asked over federation; remote.example cannot be reached: 502, as Synapse.
    await expect_error(await client.get(alias_url("#room:remote.example")), 502, "M_UNKNOWN")


async def test_join_and_knock_resolve_aliases_like_the_directory(client: Any) -> None:
    # One resolver answers GET /directory/room and the {roomIdOrAlias} of /join and /knock.
    owner = await register(client)
    guest = await register(client)
    room_id = await create_room(client, owner["access_token"])
    assert (await set_alias(client, owner["access_token"], "#joinme:test.local", room_id)).status == 200
    headers = auth(guest["access_token"])
    resp = await client.post(f"{V3}/join/{quote('#joinme:test.local')}", json={}, headers=headers)
    assert (resp.status, await resp.json()) == (200, {"room_id": room_id})
    for action in ("join", "knock"):
        for target, status, errcode in (
            ("#nothing:test.local", 404, "M_NOT_FOUND"),
            ("#room:remote.example", 502, "M_UNKNOWN"),
            ("#bad alias:test.local", 400, "M_INVALID_PARAM"),
            ("nohash", 400, "M_INVALID_PARAM"),
        ):
            url = f"{V3}/{action}/{quote(target, safe='')}"
            await expect_error(await client.post(url, json={}, headers=headers), status, errcode)


async def test_delete_alias_permissions(client: Any) -> None:
    alice = await register(client)  # room creator, power 100
    bob = await register(client)  # member who made the alias, power 0
    carol = await register(client)  # member, power 0
    dave = await register(client)  # not in the room
    admin = await register(client, admin=True)  # server admin, not in the room
    room_id = await create_room(client, alice["access_token"])
    for user in (bob, carol):
        await join(client, user["access_token"], room_id)

    for name in ("a", "b", "c", "d"):
        resp = await set_alias(client, bob["access_token"], f"#{name}:test.local", room_id)
        assert resp.status == 200

    # Neither a member without power nor an outsider may delete someone else's alias.
    await expect_error(
        await client.delete(alias_url("#a:test.local"), headers=auth(carol["access_token"])),
        403,
        "M_FORBIDDEN",
    )
    await expect_error(
        await client.delete(alias_url("#a:test.local"), headers=auth(dave["access_token"])),
        403,
        "M_FORBIDDEN",
    )
    await expect_error(await client.delete(alias_url("#a:test.local")), 401, "M_MISSING_TOKEN")
    await expect_error(await client.delete(alias_url("bad")), 401, "M_MISSING_TOKEN")
    await expect_error(
        await client.delete(alias_url("bad"), headers=auth(alice["access_token"])), 400, "M_INVALID_PARAM"
    )

    # The creator of the alias, a room moderator (may send m.room.canonical_alias) and a server admin may.
    assert (await client.delete(alias_url("#a:test.local"), headers=auth(bob["access_token"]))).status == 200
    assert (
        await client.delete(alias_url("#b:test.local"), headers=auth(alice["access_token"]))
    ).status == 200
    assert (
        await client.delete(alias_url("#c:test.local"), headers=auth(admin["access_token"]))
    ).status == 200

    resp = await put_state(
        client,
        alice["access_token"],
        room_id,
        "m.room.power_levels",
        {
            "users": {alice["user_id"]: 100, carol["user_id"]: 50},
            "events": {"m.room.canonical_alias": 50},
        },
    )
    assert resp.status == 200, await resp.json()
    assert (
        await client.delete(alias_url("#d:test.local"), headers=auth(carol["access_token"]))
    ).status == 200

    await expect_error(
        await client.delete(alias_url("#far:remote.example"), headers=auth(alice["access_token"])),
        404,
        "M_NOT_FOUND",
    )


async def test_delete_alias_updates_canonical_alias(client: Any) -> None:
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"], room_alias_name="main")
    assert (await set_alias(client, alice["access_token"], "#alt:test.local", room_id)).status == 200
    assert (await set_alias(client, alice["access_token"], "#other:test.local", room_id)).status == 200
    resp = await put_state(
        client,
        alice["access_token"],
        room_id,
        "m.room.canonical_alias",
        {"alias": "#main:test.local", "alt_aliases": ["#alt:test.local", "#other:test.local"]},
    )
    assert resp.status == 200, await resp.json()

    async def canonical() -> dict[str, Any]:
        resp = await client.get(
            f"{V3}/rooms/{room_id}/state/m.room.canonical_alias", headers=auth(alice["access_token"])
        )
        return dict(await resp.json())

    assert (
        await client.delete(alias_url("#alt:test.local"), headers=auth(alice["access_token"]))
    ).status == 200
    assert await canonical() == {"alias": "#main:test.local", "alt_aliases": ["#other:test.local"]}
    assert (
        await client.delete(alias_url("#main:test.local"), headers=auth(alice["access_token"]))
    ).status == 200
    assert await canonical() == {"alt_aliases": ["#other:test.local"]}
    assert (
        await client.delete(alias_url("#other:test.local"), headers=auth(alice["access_token"]))
    ).status == 200
    assert await canonical() == {}


async def test_local_aliases_access(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    admin = await register(client, admin=True)
    room_id = await create_room(client, alice["access_token"], room_alias_name="seen")
    url = f"{V3}/rooms/{room_id}/aliases"

    await expect_error(await client.get(url), 401, "M_MISSING_TOKEN")
    await expect_error(await client.get(url, headers=auth(bob["access_token"])), 403, "M_FORBIDDEN")
    resp = await client.get(url, headers=auth(admin["access_token"]))
    assert await resp.json() == {"aliases": ["#seen:test.local"]}
    # Unknown rooms look the same as rooms one is not in.
    await expect_error(
        await client.get(f"{V3}/rooms/!nope:test.local/aliases", headers=auth(bob["access_token"])),
        403,
        "M_FORBIDDEN",
    )
    await expect_error(
        await client.get(f"{V3}/rooms/nope/aliases", headers=auth(bob["access_token"])),
        400,
        "M_INVALID_PARAM",
    )

    resp = await put_state(
        client,
        alice["access_token"],
        room_id,
        "m.room.history_visibility",
        {"history_visibility": "world_readable"},
    )
    assert resp.status == 200
    resp = await client.get(url, headers=auth(bob["access_token"]))
    assert await resp.json() == {"aliases": ["#seen:test.local"]}


# -- directory visibility ---------------------------------------------------------------------------


async def test_room_visibility(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    carol = await register(client)
    admin = await register(client, admin=True)
    room_id = await create_room(client, alice["access_token"])
    await join(client, bob["access_token"], room_id)
    url = f"{V3}/directory/list/room/{room_id}"

    resp = await client.get(url)  # no auth needed
    assert resp.status == 200
    assert await resp.json() == {"visibility": "private"}

    await expect_error(await publish(client, bob["access_token"], room_id), 403, "M_FORBIDDEN")  # power 0
    await expect_error(
        await publish(client, carol["access_token"], room_id), 403, "M_FORBIDDEN"
    )  # not in room
    await expect_error(await client.put(url, json={"visibility": "public"}), 401, "M_MISSING_TOKEN")
    await expect_error(await publish(client, alice["access_token"], room_id, "secret"), 400, "M_BAD_JSON")

    resp = await publish(client, alice["access_token"], room_id)
    assert resp.status == 200, await resp.json()
    assert await resp.json() == {}
    assert await (await client.get(url)).json() == {"visibility": "public"}
    assert (await publish(client, alice["access_token"], room_id)).status == 200  # no change needed

    # A server admin need not be in the room; the visibility defaults to public.
    assert (await publish(client, admin["access_token"], room_id, "private")).status == 200
    assert await (await client.get(url)).json() == {"visibility": "private"}
    resp = await client.put(url, json={}, headers=auth(admin["access_token"]))
    assert resp.status == 200
    assert await (await client.get(url)).json() == {"visibility": "public"}


async def test_room_visibility_unknown_room(client: Any) -> None:
    alice = await register(client)
    await expect_error(await client.get(f"{V3}/directory/list/room/!nope:test.local"), 404, "M_NOT_FOUND")
    await expect_error(await publish(client, alice["access_token"], "!nope:test.local"), 404, "M_NOT_FOUND")
    await expect_error(await client.get(f"{V3}/directory/list/room/nope"), 400, "M_INVALID_PARAM")


async def test_publication_rules(make_client: ClientFactory) -> None:
    # The default (as Synapse since 1.126): nobody may publish through the client API.
    client = await make_client(room_list_publication_rules=[])
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"])
    body = await expect_error(await publish(client, alice["access_token"], room_id), 403, "M_FORBIDDEN")
    assert "publish" in body["error"]
    # Unpublishing is always allowed.
    assert (await publish(client, alice["access_token"], room_id, "private")).status == 200


async def test_publication_rules_match_aliases(make_client: ClientFactory) -> None:
    client = await make_client(
        room_list_publication_rules=[{"alias": "#public-*", "action": "allow"}, {"action": "deny"}]
    )
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"])
    await expect_error(await publish(client, alice["access_token"], room_id), 403, "M_FORBIDDEN")
    assert (await set_alias(client, alice["access_token"], "#public-hall:test.local", room_id)).status == 200
    assert (await publish(client, alice["access_token"], room_id)).status == 200


async def test_room_list_search_disabled(make_client: ClientFactory) -> None:
    client = await make_client(enable_room_list_search=False)
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"])
    await expect_error(await publish(client, alice["access_token"], room_id), 403, "M_FORBIDDEN")
    resp = await client.get(f"{V3}/publicRooms", headers=auth(alice["access_token"]))
    assert await resp.json() == {"chunk": [], "total_room_count_estimate": 0}


# -- /publicRooms -----------------------------------------------------------------------------------


async def _published_rooms(client: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Four published rooms with 4, 3, 2 and 1 joined members; returns (creator, name -> room id)."""
    owner = await register(client)
    users = [await register(client) for _ in range(3)]
    specs = [
        ("General", "Everything and anything", 3),
        ("한국어 수업", "매주 화요일 저녁 일곱 시", 2),
        ("Random", None, 1),
        ("Quiet", "Nobody talks", 0),
    ]
    rooms: dict[str, str] = {}
    for name, topic, extra in specs:
        body: dict[str, Any] = {"name": name}
        if topic is not None:
            body["topic"] = topic
        room_id = await create_room(client, owner["access_token"], **body)
        for user in users[:extra]:
            await join(client, user["access_token"], room_id)
        assert (await publish(client, owner["access_token"], room_id)).status == 200
        rooms[name] = room_id
    return owner, rooms


async def test_public_rooms_listing(client: Any) -> None:
    owner, rooms = await _published_rooms(client)
    hidden = await create_room(client, owner["access_token"], name="Unpublished")
    del hidden

    resp = await client.get(f"{V3}/publicRooms", headers=auth(owner["access_token"]))
    body = await resp.json()
    assert resp.status == 200, body
    assert [e["room_id"] for e in body["chunk"]] == [
        rooms["General"],
        rooms["한국어 수업"],
        rooms["Random"],
        rooms["Quiet"],
    ]
    assert body["total_room_count_estimate"] == 4
    assert "next_batch" not in body and "prev_batch" not in body
    general = body["chunk"][0]
    assert general == {
        "room_id": rooms["General"],
        "name": "General",
        "topic": "Everything and anything",
        "num_joined_members": 4,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
    }
    assert "topic" not in body["chunk"][2]

    # canonical alias, avatar and guest access show up
    room_id = rooms["Random"]
    assert (await set_alias(client, owner["access_token"], "#random:test.local", room_id)).status == 200
    for etype, content in [
        ("m.room.canonical_alias", {"alias": "#random:test.local"}),
        ("m.room.avatar", {"url": "mxc://test.local/abc"}),
        ("m.room.guest_access", {"guest_access": "can_join"}),
        ("m.room.history_visibility", {"history_visibility": "world_readable"}),
    ]:
        assert (await put_state(client, owner["access_token"], room_id, etype, content)).status == 200
    resp = await client.post(f"{V3}/publicRooms", json={}, headers=auth(owner["access_token"]))
    entry = next(e for e in (await resp.json())["chunk"] if e["room_id"] == room_id)
    assert entry["canonical_alias"] == "#random:test.local"
    assert entry["avatar_url"] == "mxc://test.local/abc"
    assert entry["guest_can_join"] is True
    assert entry["world_readable"] is True

    # the own server name is the local directory
    resp = await client.get(f"{V3}/publicRooms?server=test.local", headers=auth(owner["access_token"]))
    assert len((await resp.json())["chunk"]) == 4


async def test_public_rooms_auth(make_client: ClientFactory) -> None:
    # Closed directory (Synapse's default; ours follows the spec and is open unless configured).
    client = await make_client(allow_public_rooms_without_auth=False)
    alice = await register(client)
    await expect_error(await client.get(f"{V3}/publicRooms"), 401, "M_MISSING_TOKEN")
    await expect_error(await client.post(f"{V3}/publicRooms", json={}), 401, "M_MISSING_TOKEN")
    await expect_error(
        await client.get(f"{V3}/publicRooms", headers=auth("not-a-token")), 401, "M_UNKNOWN_TOKEN"
    )
    resp = await client.get(f"{V3}/publicRooms", headers=auth(alice["access_token"]))
    assert resp.status == 200

    open_client = await make_client()
    bob = await register(open_client)
    room_id = await create_room(open_client, bob["access_token"])
    assert (await publish(open_client, bob["access_token"], room_id)).status == 200
    resp = await open_client.get(f"{V3}/publicRooms")
    body = await resp.json()
    assert resp.status == 200, body
    assert [e["room_id"] for e in body["chunk"]] == [room_id]
    # Without a token, never for another server's directory.
    await expect_error(
        await open_client.get(f"{V3}/publicRooms?server=remote.example"), 401, "M_MISSING_TOKEN"
    )
    # POST always needs a token.
    await expect_error(await open_client.post(f"{V3}/publicRooms", json={}), 401, "M_MISSING_TOKEN")


async def test_public_rooms_pagination(client: Any) -> None:
    owner, rooms = await _published_rooms(client)
    order = [rooms["General"], rooms["한국어 수업"], rooms["Random"], rooms["Quiet"]]
    headers = auth(owner["access_token"])

    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    since = None
    while True:
        url = f"{V3}/publicRooms?limit=1" + (f"&since={quote(since)}" if since else "")
        resp = await client.get(url, headers=headers)
        body = await resp.json()
        assert resp.status == 200, body
        assert body["total_room_count_estimate"] == 4
        pages.append(body)
        seen.extend(e["room_id"] for e in body["chunk"])
        since = body.get("next_batch")
        if since is None:
            break
    assert seen == order
    assert "prev_batch" not in pages[0]
    assert all("prev_batch" in p for p in pages[1:])

    # prev_batch of the last page goes back one page at a time, still largest first
    resp = await client.post(
        f"{V3}/publicRooms", json={"limit": 2, "since": pages[-1]["prev_batch"]}, headers=headers
    )
    body = await resp.json()
    assert [e["room_id"] for e in body["chunk"]] == order[1:3]
    assert "next_batch" in body and "prev_batch" in body
    resp = await client.post(
        f"{V3}/publicRooms", json={"limit": 2, "since": body["prev_batch"]}, headers=headers
    )
    back = await resp.json()
    assert [e["room_id"] for e in back["chunk"]] == order[:1]
    assert "prev_batch" not in back
    resp = await client.post(
        f"{V3}/publicRooms", json={"limit": 2, "since": back["next_batch"]}, headers=headers
    )
    assert [e["room_id"] for e in (await resp.json())["chunk"]] == order[1:3]

    # POST pages the same way
    resp = await client.post(f"{V3}/publicRooms", json={"limit": 3}, headers=headers)
    body = await resp.json()
    assert [e["room_id"] for e in body["chunk"]] == order[:3]
    resp = await client.post(
        f"{V3}/publicRooms", json={"limit": 3, "since": body["next_batch"]}, headers=headers
    )
    body = await resp.json()
    assert [e["room_id"] for e in body["chunk"]] == order[3:]
    assert "next_batch" not in body

    # limit 0 means the server's default
    resp = await client.get(f"{V3}/publicRooms?limit=0", headers=headers)
    assert len((await resp.json())["chunk"]) == 4


async def test_public_rooms_pagination_token_unit() -> None:
    token = PublicRoomsToken(12, "!a:b", forward=False)
    assert PublicRoomsToken.decode(token.encode()) == token


async def test_public_rooms_bad_parameters(client: Any) -> None:
    alice = await register(client)
    headers = auth(alice["access_token"])
    await expect_error(await client.get(f"{V3}/publicRooms?limit=x", headers=headers), 400, "M_INVALID_PARAM")
    await expect_error(
        await client.get(f"{V3}/publicRooms?limit=-1", headers=headers), 400, "M_INVALID_PARAM"
    )
    await expect_error(
        await client.get(f"{V3}/publicRooms?since=garbage", headers=headers), 400, "M_INVALID_PARAM"
    )
    await expect_error(
        await client.get(f"{V3}/publicRooms?server=bad%20name", headers=headers), 400, "M_INVALID_PARAM"
    )
    # An unreachable server (remote.example does not resolve here): 502, as Synapse.
    await expect_error(
        await client.get(f"{V3}/publicRooms?server=remote.example", headers=headers), 502, "M_UNKNOWN"
    )
    for body, errcode in [
        ({"limit": "ten"}, "M_BAD_JSON"),
        ({"limit": -5}, "M_INVALID_PARAM"),
        ({"since": 3}, "M_BAD_JSON"),
        ({"since": "garbage"}, "M_INVALID_PARAM"),
        ({"filter": "x"}, "M_BAD_JSON"),
        ({"filter": {"generic_search_term": 1}}, "M_BAD_JSON"),
        ({"filter": {"room_types": "m.space"}}, "M_BAD_JSON"),
        ({"filter": {"room_types": [1]}}, "M_BAD_JSON"),
        ({"include_all_networks": "yes"}, "M_BAD_JSON"),
        ({"include_all_networks": True, "third_party_instance_id": "irc"}, "M_INVALID_PARAM"),
    ]:
        resp = await client.post(f"{V3}/publicRooms", json=body, headers=headers)
        await expect_error(resp, 400, errcode)
    resp = await client.post(f"{V3}/publicRooms?server=remote.example", json={}, headers=headers)
    await expect_error(resp, 502, "M_UNKNOWN")


async def test_public_rooms_search(client: Any) -> None:
    owner, rooms = await _published_rooms(client)
    assert (
        await set_alias(client, owner["access_token"], "#chatter:test.local", rooms["Random"])
    ).status == 200
    resp = await put_state(
        client,
        owner["access_token"],
        rooms["Random"],
        "m.room.canonical_alias",
        {"alias": "#chatter:test.local"},
    )
    assert resp.status == 200
    headers = auth(owner["access_token"])

    async def search(term: str, **extra: Any) -> list[str]:
        resp = await client.post(
            f"{V3}/publicRooms", json={"filter": {"generic_search_term": term}, **extra}, headers=headers
        )
        body = await resp.json()
        assert resp.status == 200, body
        assert body["total_room_count_estimate"] == len(body["chunk"]) or "next_batch" in body
        return [e["room_id"] for e in body["chunk"]]

    assert await search("general") == [rooms["General"]]  # case-insensitive
    assert await search("GENERAL") == [rooms["General"]]
    assert await search("anything") == [rooms["General"]]  # topic
    assert await search("국어") == [rooms["한국어 수업"]]  # any Korean substring of the name
    assert await search("화요일") == [rooms["한국어 수업"]]  # ... or of the topic
    assert await search("chatter") == [rooms["Random"]]  # canonical alias
    assert await search("%") == []  # no SQL wildcards
    assert await search("zzz") == []
    assert await search("  ") == list(rooms.values())  # blank: no filter
    assert await search("", include_all_networks=True) == list(rooms.values())
    assert await search("general", third_party_instance_id="irc") == []  # no network lists


async def test_public_rooms_room_types(client: Any) -> None:
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"], name="Room")
    space_id = await create_room(
        client, alice["access_token"], name="Space", creation_content={"type": "m.space"}
    )
    for rid in (room_id, space_id):
        assert (await publish(client, alice["access_token"], rid)).status == 200
    headers = auth(alice["access_token"])

    async def listed(room_types: Any) -> set[str]:
        body: dict[str, Any] = {} if room_types is ... else {"filter": {"room_types": room_types}}
        resp = await client.post(f"{V3}/publicRooms", json=body, headers=headers)
        data = await resp.json()
        assert resp.status == 200, data
        return {e["room_id"] for e in data["chunk"]}

    assert await listed(...) == {room_id, space_id}
    assert await listed([]) == {room_id, space_id}
    assert await listed([None]) == {room_id}
    assert await listed(["m.space"]) == {space_id}
    assert await listed([None, "m.space"]) == {room_id, space_id}
    resp = await client.get(f"{V3}/publicRooms", headers=headers)
    space = next(e for e in (await resp.json())["chunk"] if e["room_id"] == space_id)
    assert space["room_type"] == "m.space"


async def test_public_rooms_listing_rules(client: Any) -> None:
    """Published rooms stay published, but are listed only while joinable, knockable or readable."""
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"], name="Shifting")
    assert (await publish(client, alice["access_token"], room_id)).status == 200
    headers = auth(alice["access_token"])

    async def listed() -> bool:
        resp = await client.get(f"{V3}/publicRooms", headers=headers)
        return room_id in {e["room_id"] for e in (await resp.json())["chunk"]}

    assert await listed()
    assert (
        await put_state(client, alice["access_token"], room_id, "m.room.join_rules", {"join_rule": "invite"})
    ).status == 200
    assert not await listed()
    assert await (await client.get(f"{V3}/directory/list/room/{room_id}")).json() == {"visibility": "public"}
    resp = await put_state(
        client, alice["access_token"], room_id, "m.room.join_rules", {"join_rule": "knock"}
    )
    assert resp.status == 200, await resp.json()
    assert await listed()
    assert (
        await put_state(client, alice["access_token"], room_id, "m.room.join_rules", {"join_rule": "invite"})
    ).status == 200
    resp = await put_state(
        client,
        alice["access_token"],
        room_id,
        "m.room.history_visibility",
        {"history_visibility": "world_readable"},
    )
    assert resp.status == 200
    assert await listed()

    # A room nobody is joined to any more is not listed.
    resp = await put_state(
        client, alice["access_token"], room_id, "m.room.history_visibility", {"history_visibility": "shared"}
    )
    assert (
        await put_state(client, alice["access_token"], room_id, "m.room.join_rules", {"join_rule": "public"})
    ).status == 200
    assert await listed()
    assert (await client.post(f"{V3}/rooms/{room_id}/leave", headers=headers)).status == 200
    assert not await listed()


async def test_create_room_public_visibility_is_listed(client: Any) -> None:
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"], visibility="public", name="Created public")
    assert await (await client.get(f"{V3}/directory/list/room/{room_id}")).json() == {"visibility": "public"}
    resp = await client.get(f"{V3}/publicRooms", headers=auth(alice["access_token"]))
    assert [e["room_id"] for e in (await resp.json())["chunk"]] == [room_id]


async def test_redacted_name_is_not_listed(client: Any) -> None:
    alice = await register(client)
    room_id = await create_room(client, alice["access_token"], name="Secret name")
    assert (await publish(client, alice["access_token"], room_id)).status == 200
    headers = auth(alice["access_token"])
    resp = await client.get(f"{V3}/rooms/{room_id}/state/m.room.name?format=event", headers=headers)
    event_id = (await resp.json())["event_id"]
    resp = await client.put(f"{V3}/rooms/{room_id}/redact/{event_id}/r1", json={}, headers=headers)
    assert resp.status == 200, await resp.json()
    resp = await client.get(f"{V3}/publicRooms", headers=headers)
    entry = (await resp.json())["chunk"][0]
    assert "name" not in entry
