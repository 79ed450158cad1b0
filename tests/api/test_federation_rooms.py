"""Rooms across servers: /publicRooms and /hierarchy served over federation, OpenID tokens, and
the client paths that read other servers (remote public room lists, remote space children, the
/timestamp_to_event fallback), between two in-process servers and small fake remotes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from homeserver.core.clock import FakeClock

from ..conftest import services_of
from .fed_reads_helpers import (
    REMOTE,
    V3,
    create_room,
    fed_get,
    fed_post,
    persist_member,
    put_state,
    q,
    route_federation,
    send,
    start,
    start_with,
    trust_server,
)
from .helpers import auth, register

V1 = "/_matrix/client/v1"
ALLOW_PUBLISH = {"room_list_publication_rules": [{"action": "allow"}]}
BOB = f"@bob:{REMOTE}"


async def publish(client: Any, token: str, room_id: str) -> None:
    resp = await client.put(
        f"{V3}/directory/list/room/{room_id}", json={"visibility": "public"}, headers=auth(token)
    )
    assert resp.status == 200, await resp.json()


async def add_child(client: Any, token: str, space: str, child: str, via: str, **extra: Any) -> None:
    await put_state(client, token, space, "m.space.child", {"via": [via], **extra}, key=child)


# -- /publicRooms over federation -------------------------------------------------------------------


async def test_public_rooms_denied_unless_allowed(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    status, body = await fed_get(client, "/publicRooms")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await fed_post(client, "/publicRooms", {})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_public_rooms_over_federation(aiohttp_client: Any, engine_config: Any) -> None:
    client = await start_with(
        aiohttp_client, engine_config, allow_public_rooms_over_federation=True, **ALLOW_PUBLISH
    )
    alice = await register(client, "alice")
    token = alice["access_token"]
    rooms = {}
    for name in ("Chess club", "Gardening", "Local only"):
        extra: dict[str, Any] = {"creation_content": {"m.federate": False}} if name == "Local only" else {}
        rooms[name] = await create_room(client, token, name=name, **extra)
        await publish(client, token, rooms[name])

    status, body = await fed_get(client, "/publicRooms")
    assert status == 200, body
    listed = {e["room_id"] for e in body["chunk"]}
    assert listed == {rooms["Chess club"], rooms["Gardening"]}  # m.federate: false is not listed
    assert body["total_room_count_estimate"] == 2
    # Local clients still see the local-only room.
    resp = await client.get(f"{V3}/publicRooms", headers=auth(token))
    assert rooms["Local only"] in {e["room_id"] for e in (await resp.json())["chunk"]}

    status, body = await fed_get(client, "/publicRooms", {"limit": 1})
    assert status == 200 and len(body["chunk"]) == 1 and "next_batch" in body
    first = body["chunk"][0]["room_id"]
    status, body = await fed_get(client, "/publicRooms", {"limit": 1, "since": body["next_batch"]})
    assert status == 200 and [e["room_id"] for e in body["chunk"]] != [first] and len(body["chunk"]) == 1
    status, body = await fed_get(client, "/publicRooms", {"include_all_networks": "true"})
    assert status == 200 and len(body["chunk"]) == 2

    status, body = await fed_post(client, "/publicRooms", {"filter": {"generic_search_term": "chess"}})
    assert status == 200 and [e["room_id"] for e in body["chunk"]] == [rooms["Chess club"]]
    # As Synapse sends it: include_all_networks (and, from older versions, limit) as strings.
    status, body = await fed_post(
        client, "/publicRooms", {"include_all_networks": "false", "limit": "1", "filter": {}}
    )
    assert status == 200 and len(body["chunk"]) == 1, body
    status, body = await fed_post(client, "/publicRooms", {"filter": {"generic_search_term": "local"}})
    assert (status, body["chunk"]) == (200, [])

    for args in ({"limit": "-1"}, {"limit": "x"}, {"since": "garbage"}, {"include_all_networks": "maybe"}):
        status, body = await fed_get(client, "/publicRooms", args)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), args
    for bad, errcode in [
        ({"filter": "x"}, "M_BAD_JSON"),
        ({"limit": "ten"}, "M_BAD_JSON"),
        ({"include_all_networks": "maybe"}, "M_BAD_JSON"),
        ({"include_all_networks": True, "third_party_instance_id": "irc"}, "M_INVALID_PARAM"),
    ]:
        status, body = await fed_post(client, "/publicRooms", bad)
        assert (status, body["errcode"]) == (400, errcode), bad


# -- /hierarchy over federation ---------------------------------------------------------------------


async def test_hierarchy_over_federation(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    services = services_of(client)
    alice = await register(client, "alice")
    token = alice["access_token"]
    space = await create_room(client, token, name="Space", creation_content={"type": "m.space"})
    public = await create_room(client, token, name="Public", topic="open")
    private = await create_room(client, token, name="Private", preset="private_chat")
    await add_child(client, token, space, public, "test.local", order="a", suggested=True)
    await add_child(client, token, space, private, "test.local", order="b")
    await add_child(client, token, space, "!unknown:elsewhere.example", "elsewhere.example", order="c")

    status, body = await fed_get(client, f"/hierarchy/{q(space)}")
    assert status == 200, body
    assert body["room"]["room_id"] == space and body["room"]["room_type"] == "m.space"
    assert body["room"]["name"] == "Space" and body["room"]["join_rule"] == "public"
    assert [c["state_key"] for c in body["room"]["children_state"]] == [
        public,
        private,
        "!unknown:elsewhere.example",
    ]
    assert all(
        "origin_server_ts" in c and c["type"] == "m.space.child" for c in body["room"]["children_state"]
    )
    assert [c["room_id"] for c in body["children"]] == [public]
    assert body["children"][0]["topic"] == "open" and body["children"][0]["num_joined_members"] == 1
    assert body["inaccessible_children"] == [private]

    status, body = await fed_get(client, f"/hierarchy/{q(space)}", {"suggested_only": "true"})
    assert [c["state_key"] for c in body["room"]["children_state"]] == [public]
    assert body["inaccessible_children"] == []

    # A private room: 404 for a server with no way in, shown once one of its users is invited.
    status, body = await fed_get(client, f"/hierarchy/{q(private)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    await persist_member(services, private, BOB, "invite", sender=alice["user_id"])
    status, body = await fed_get(client, f"/hierarchy/{q(private)}")
    assert status == 200 and body["room"]["room_id"] == private and body["children"] == []
    status, body = await fed_get(client, f"/hierarchy/{q(space)}")
    assert [c["room_id"] for c in body["children"]] == [public, private]

    # A restricted room: accessible once the server has a user in one of its allowed rooms.
    restricted = await create_room(
        client,
        token,
        preset="private_chat",
        initial_state=[
            {
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}],
                },
            }
        ],
    )
    status, body = await fed_get(client, f"/hierarchy/{q(restricted)}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    await persist_member(services, space, BOB, "join")
    status, body = await fed_get(client, f"/hierarchy/{q(restricted)}")
    assert status == 200 and body["room"]["allowed_room_ids"] == [space]

    status, body = await fed_get(client, f"/hierarchy/{q('!nope:test.local')}")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await fed_get(client, f"/hierarchy/{q(space)}", {"suggested_only": "yes"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await fed_get(client, "/hierarchy/nonsense")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


# -- OpenID -----------------------------------------------------------------------------------------


async def test_openid_tokens(aiohttp_client: Any, engine_config: Any) -> None:
    clock = FakeClock()
    client = await start_with(aiohttp_client, engine_config, clock=clock)
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    url = f"{V3}/user/{q(alice['user_id'])}/openid/request_token"
    resp = await client.post(url, json={}, headers=auth(alice["access_token"]))
    body = await resp.json()
    assert resp.status == 200, body
    assert body["token_type"] == "Bearer" and body["matrix_server_name"] == "test.local"
    assert body["expires_in"] == 3600 and isinstance(body["access_token"], str)
    token = body["access_token"]

    # Called by another service: no X-Matrix signature needed.
    resp = await client.get(f"/_matrix/federation/v1/openid/userinfo?access_token={q(token)}")
    assert (resp.status, await resp.json()) == (200, {"sub": alice["user_id"]})
    # The OpenID token is not an access token.
    resp = await client.get(f"{V3}/account/whoami", headers=auth(token))
    assert resp.status == 401

    resp = await client.post(url, json={}, headers=auth(bob["access_token"]))
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    resp = await client.post(url, data=b"{not json", headers=auth(alice["access_token"]))
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_NOT_JSON")
    resp = await client.post(url, json={})
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_MISSING_TOKEN")
    for query, errcode in [("?access_token=nope", "M_UNKNOWN_TOKEN"), ("", "M_MISSING_TOKEN")]:
        resp = await client.get(f"/_matrix/federation/v1/openid/userinfo{query}")
        assert (resp.status, (await resp.json())["errcode"]) == (401, errcode)

    clock.advance(3600 * 1000 + 1)
    resp = await client.get(f"/_matrix/federation/v1/openid/userinfo?access_token={q(token)}")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNKNOWN_TOKEN")


# -- client paths reading other servers ---------------------------------------------------------------


async def _two_servers(aiohttp_client: Any, tmp_path: Path, **remote_extra: Any) -> tuple[Any, Any]:
    """Our server (test.local) and another instance as remote.example, federating in process."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    local = await start(aiohttp_client, tmp_path / "a")
    remote = await start(aiohttp_client, tmp_path / "b", server_name=REMOTE, **remote_extra)
    trust_server(services_of(remote), services_of(local))
    route_federation(services_of(local), {REMOTE: remote})
    return local, remote


async def test_client_public_rooms_of_another_server(aiohttp_client: Any, tmp_path: Path) -> None:
    local, remote = await _two_servers(
        aiohttp_client, tmp_path, allow_public_rooms_over_federation=True, **ALLOW_PUBLISH
    )
    carol = await register(remote, "carol")
    chess = await create_room(remote, carol["access_token"], name="Chess club")
    garden = await create_room(remote, carol["access_token"], name="Gardening")
    for room_id in (chess, garden):
        await publish(remote, carol["access_token"], room_id)
    alice = await register(local, "alice")
    headers = auth(alice["access_token"])

    resp = await local.get(f"{V3}/publicRooms?server={REMOTE}", headers=headers)
    body = await resp.json()
    assert resp.status == 200, body
    assert {e["room_id"] for e in body["chunk"]} == {chess, garden}
    resp = await local.get(f"{V3}/publicRooms?server={REMOTE}&limit=1", headers=headers)
    body = await resp.json()
    assert len(body["chunk"]) == 1 and "next_batch" in body
    resp = await local.post(
        f"{V3}/publicRooms?server={REMOTE}",
        json={"filter": {"generic_search_term": "garden"}},
        headers=headers,
    )
    body = await resp.json()
    assert resp.status == 200 and [e["room_id"] for e in body["chunk"]] == [garden]
    # Our own list is unaffected.
    resp = await local.get(f"{V3}/publicRooms", headers=headers)
    assert (await resp.json())["chunk"] == []
    # An unreachable server: 502.
    resp = await local.get(f"{V3}/publicRooms?server=nowhere.example", headers=headers)
    assert (resp.status, (await resp.json())["errcode"]) == (502, "M_UNKNOWN")


async def test_client_public_rooms_remote_refuses(aiohttp_client: Any, tmp_path: Path) -> None:
    local, _ = await _two_servers(aiohttp_client, tmp_path)  # the remote does not share its list
    alice = await register(local, "alice")
    resp = await local.get(f"{V3}/publicRooms?server={REMOTE}", headers=auth(alice["access_token"]))
    body = await resp.json()
    assert (resp.status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert "not allowed to view the public rooms list" in body["error"]


async def test_client_public_rooms_filter_fallback(aiohttp_client: Any, tmp_path: Path) -> None:
    """A remote without filtered search (POST unknown): its full GET list, filtered here."""
    seen: list[str] = []

    async def get_rooms(request: web.Request) -> web.Response:
        seen.append(f"GET {request.query_string}")
        return web.json_response(
            {
                "chunk": [
                    {
                        "room_id": "!a:old.example",
                        "name": "Chess",
                        "num_joined_members": 3,
                        "world_readable": False,
                        "guest_can_join": False,
                    },
                    {
                        "room_id": "!b:old.example",
                        "topic": "about gardening",
                        "num_joined_members": 1,
                        "world_readable": False,
                        "guest_can_join": False,
                    },
                    "garbage",
                ],
                "next_batch": "x",
            }
        )

    async def post_rooms(request: web.Request) -> web.Response:
        seen.append("POST")
        return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized"}, status=404)

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/publicRooms", get_rooms)
    app.router.add_post("/_matrix/federation/v1/publicRooms", post_rooms)
    old = await aiohttp_client(app)
    local = await start(aiohttp_client, tmp_path)
    route_federation(services_of(local), {"old.example": old})
    alice = await register(local, "alice")
    resp = await local.post(
        f"{V3}/publicRooms?server=old.example",
        json={"filter": {"generic_search_term": "GARDEN"}},
        headers=auth(alice["access_token"]),
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert [e["room_id"] for e in body["chunk"]] == ["!b:old.example"] and "next_batch" not in body
    assert seen[0] == "POST" and seen[1].startswith("GET")
    # A remote answering garbage is a 502, not a 500.
    junk_app = web.Application()
    junk_app.router.add_get("/_matrix/federation/v1/publicRooms", _junk)
    junk = await aiohttp_client(junk_app)
    route_federation(services_of(local), {"old.example": old, "junk.example": junk})
    resp = await local.get(f"{V3}/publicRooms?server=junk.example", headers=auth(alice["access_token"]))
    assert (resp.status, (await resp.json())["errcode"]) == (502, "M_UNKNOWN")


async def _junk(request: web.Request) -> web.Response:
    return web.json_response([1, 2])


async def test_client_hierarchy_with_remote_children(aiohttp_client: Any, tmp_path: Path) -> None:
    local, remote = await _two_servers(aiohttp_client, tmp_path)
    carol = await register(remote, "carol")
    ctoken = carol["access_token"]
    remote_space = await create_room(
        remote, ctoken, name="Remote space", creation_content={"type": "m.space"}
    )
    remote_room = await create_room(remote, ctoken, name="Remote room", topic="far away")
    remote_private = await create_room(remote, ctoken, name="Hidden", preset="private_chat")
    await add_child(remote, ctoken, remote_space, remote_room, REMOTE, order="a")
    await add_child(remote, ctoken, remote_space, remote_private, REMOTE, order="b")

    alice = await register(local, "alice")
    token = alice["access_token"]
    space = await create_room(local, token, name="Home", creation_content={"type": "m.space"})
    local_room = await create_room(local, token, name="Local room")
    await add_child(local, token, space, local_room, "test.local", order="a")
    await add_child(local, token, space, remote_space, REMOTE, order="b")
    await add_child(local, token, space, "!gone:nowhere.example", "nowhere.example", order="c")

    resp = await local.get(f"{V1}/rooms/{space}/hierarchy", headers=auth(token))
    body = await resp.json()
    assert resp.status == 200, body
    rooms = {r["room_id"]: r for r in body["rooms"]}
    assert [r["room_id"] for r in body["rooms"]] == [space, local_room, remote_space, remote_room]
    assert rooms[remote_room]["topic"] == "far away" and rooms[remote_room]["num_joined_members"] == 1
    assert [c["state_key"] for c in rooms[remote_space]["children_state"]] == [remote_room, remote_private]
    # max_depth stops before the remote space's children.
    resp = await local.get(f"{V1}/rooms/{space}/hierarchy?max_depth=1", headers=auth(token))
    assert [r["room_id"] for r in (await resp.json())["rooms"]] == [space, local_room, remote_space]


async def test_client_timestamp_to_event_asks_the_room_servers(aiohttp_client: Any, tmp_path: Path) -> None:
    asked: list[str] = []

    async def timestamp(request: web.Request) -> web.Response:
        asked.append(request.query_string)
        ts = int(request.query["ts"])
        if request.query["dir"] == "b":
            return web.json_response({"event_id": "$older:remote.example", "origin_server_ts": ts - 5})
        # A remote pointing the wrong way is ignored.
        return web.json_response({"event_id": "$wrong:remote.example", "origin_server_ts": ts - 5})

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/timestamp_to_event/{roomId}", timestamp)
    fake = await aiohttp_client(app)
    local = await start(aiohttp_client, tmp_path)
    services = services_of(local)
    route_federation(services, {REMOTE: fake})
    alice = await register(local, "alice")
    token = alice["access_token"]
    room_id = await create_room(local, token)
    await persist_member(services, room_id, BOB, "join")
    message = await send(local, token, room_id, "hello")
    stored = await services.events.get_event(message)
    assert stored is not None
    url = f"{V1}/rooms/{room_id}/timestamp_to_event"

    # A local event fits: nobody is asked.
    resp = await local.get(f"{url}?ts={stored.event.origin_server_ts}&dir=b", headers=auth(token))
    assert (await resp.json())["event_id"] == message and asked == []
    # Before the room existed here: the remote's answer.
    resp = await local.get(f"{url}?ts=1000&dir=b", headers=auth(token))
    body = await resp.json()
    assert (resp.status, body) == (200, {"event_id": "$older:remote.example", "origin_server_ts": 995})
    assert len(asked) == 1
    resp = await local.get(f"{url}?ts={stored.event.origin_server_ts + 10**9}&dir=f", headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    assert len(asked) == 2
    # Without read access the remote is never asked.
    eve = await register(local, "eve")
    private = await create_room(local, token, preset="private_chat")
    resp = await local.get(
        f"{V1}/rooms/{private}/timestamp_to_event?ts=1000&dir=b", headers=auth(eve["access_token"])
    )
    assert resp.status == 403 and len(asked) == 2


async def test_openid_resource_alone(aiohttp_client: Any, tmp_path: Path) -> None:
    """A listener with only the `openid` resource serves userinfo and nothing else (as Synapse)."""
    from homeserver.app import create_app_from_config, served_resources

    from ..conftest import make_config

    config = make_config(tmp_path)
    assert served_resources(config, ["openid"]) == ("openid", "health")
    assert "openid" in served_resources(config, ["federation"])
    client = await aiohttp_client(create_app_from_config(config, resources=("openid",)))
    resp = await client.get("/_matrix/federation/v1/openid/userinfo?access_token=nope")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    resp = await client.get("/_matrix/federation/v1/version")
    assert resp.status == 404
