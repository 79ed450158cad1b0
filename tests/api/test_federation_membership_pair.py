"""Two in-process servers joined by an in-process federation client (fed_membership_helpers): the
joining side of the membership handshakes. A user of B joins a room of A (by id with
`server_name`/`via`, and by alias), is invited by a user of A, accepts or rejects, knocks; the
room learnt from send_join then works on B like a local room (sync, members, messages, send)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config.sections import HomeserverConfig
from homeserver.events import constants as c

from ..conftest import make_config, services_of
from .fed_membership_helpers import InProcessFederation, q, trust
from .helpers import auth, register

A, B = "a.test", "b.test"


@pytest.fixture
async def pair(aiohttp_client: Any, tmp_path: Path, engine_config: Callable[..., HomeserverConfig]) -> Any:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # A on the parametrised engine, B on SQLite: both engines act as both sides across the runs.
    config_a = engine_config(server_name=A, signing_key_path=str(tmp_path / "a" / "signing.key"))
    client_a = await aiohttp_client(create_app_from_config(config_a))
    client_b = await aiohttp_client(create_app_from_config(make_config(tmp_path / "b", server_name=B)))
    servers = {A: client_a, B: client_b}
    feds = {}
    for name, client in servers.items():
        services = services_of(client)
        other = B if name == A else A
        trust(client, (other, services_of(servers[other]).signing_key))
        fed = InProcessFederation(name, services.signing_key, {other: servers[other]})
        assert services.membership.remote is not None
        services.membership.remote.client = fed  # type: ignore[assignment]
        services.remote_queries.client = fed  # type: ignore[assignment]
        feds[name] = fed
    return client_a, client_b, feds


async def create_room(client: Any, token: str, **body: Any) -> str:
    resp = await client.post("/_matrix/client/v3/createRoom", json=body, headers=auth(token))
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["room_id"])


async def sync(client: Any, token: str, since: str | None = None) -> dict[str, Any]:
    url = "/_matrix/client/v3/sync" + (f"?since={since}&timeout=0" if since else "")
    resp = await client.get(url, headers=auth(token))
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def members(client: Any, token: str, room_id: str) -> dict[str, str]:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/members", headers=auth(token))
    assert resp.status == 200, await resp.text()
    return {e["state_key"]: e["content"]["membership"] for e in (await resp.json())["chunk"]}


async def test_join_remote_room_by_id_and_use_it(pair: Any) -> None:
    a, b, feds = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    room_id = await create_room(a, alice["access_token"], preset="public_chat", name="Lobby", topic="hi")
    resp = await a.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/t1",
        json={"msgtype": "m.text", "body": "before bob"},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200
    token = bob["access_token"]
    since = (await sync(b, token))["next_batch"]

    # a dead server first: the next one is tried
    resp = await b.post(
        f"/_matrix/client/v3/join/{q(room_id)}?server_name=dead.test&server_name={A}",
        json={},
        headers=auth(token),
    )
    assert (resp.status, await resp.json()) == (200, {"room_id": room_id})
    tried = [(m, d) for m, d, p in feds[B].requests if "make_join" in p]
    assert tried == [("GET", "dead.test"), ("GET", A)]  # dead.test refuses connections

    # both servers see bob joined
    assert (await members(a, alice["access_token"], room_id))[bob["user_id"]] == "join"
    assert await members(b, token, room_id) == {alice["user_id"]: "join", bob["user_id"]: "join"}
    # bob's sync on B: the room with its state and his join
    room = (await sync(b, token, since))["rooms"]["join"][room_id]
    state = {(e["type"], e["state_key"]): e["content"] for e in room["state"]["events"]}
    state.update(
        {(e["type"], e["state_key"]): e["content"] for e in room["timeline"]["events"] if "state_key" in e}
    )
    assert state[("m.room.name", "")] == {"name": "Lobby"} and state[("m.room.topic", "")] == {"topic": "hi"}
    assert state[(c.MEMBER, bob["user_id"])]["membership"] == "join"
    assert state[(c.MEMBER, alice["user_id"])]["membership"] == "join"
    # ... and B accepts his messages like in any room
    resp = await b.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/t2",
        json={"msgtype": "m.text", "body": "hello from B"},
        headers=auth(token),
    )
    assert resp.status == 200, await resp.text()
    resp = await b.get(f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b", headers=auth(token))
    bodies = [e["content"].get("body") for e in (await resp.json())["chunk"]]
    assert "hello from B" in bodies
    resp = await b.get("/_matrix/client/v3/joined_rooms", headers=auth(token))
    assert room_id in (await resp.json())["joined_rooms"]


async def test_join_by_remote_alias(pair: Any) -> None:
    a, b, _ = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    room_id = await create_room(a, alice["access_token"], preset="public_chat", room_alias_name="lobby")
    resp = await b.post(
        f"/_matrix/client/v3/join/{q('#lobby:' + A)}", json={}, headers=auth(bob["access_token"])
    )
    assert (resp.status, await resp.json()) == (200, {"room_id": room_id})
    assert (await members(a, alice["access_token"], room_id))[bob["user_id"]] == "join"


async def test_join_errors(pair: Any) -> None:
    a, b, _ = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    token = bob["access_token"]
    private = await create_room(a, alice["access_token"], preset="private_chat")
    # not invited: A's 403 is passed on
    resp = await b.post(f"/_matrix/client/v3/rooms/{q(private)}/join?via={A}", json={}, headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    # unknown room at its own server (the room id names it)
    resp = await b.post(f"/_matrix/client/v3/join/{q('!nothing:' + A)}", json={}, headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    # only unreachable servers
    resp = await b.post(f"/_matrix/client/v3/join/{q('!x:dead.test')}", json={}, headers=auth(token))
    assert resp.status == 502
    resp = await b.get("/_matrix/client/v3/joined_rooms", headers=auth(token))
    assert (await resp.json())["joined_rooms"] == []


async def test_invite_remote_user_then_join(pair: Any) -> None:
    a, b, feds = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    token = bob["access_token"]
    room_id = await create_room(a, alice["access_token"], preset="private_chat", name="Secret")
    since = (await sync(b, token))["next_batch"]
    resp = await a.post(
        f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
        json={"user_id": bob["user_id"]},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200, await resp.text()
    assert ("PUT", B) in [(m, d) for m, d, p in feds[A].requests if "/v2/invite/" in p]
    # A's copy of the invite carries B's countersignature
    services_a = services_of(a)
    snapshot = await services_a.state.get(room_id)
    assert snapshot is not None
    invite = snapshot.get(c.MEMBER, bob["user_id"])
    assert invite is not None and set(invite.signatures) == {A, B}

    invited = (await sync(b, token, since))["rooms"]["invite"][room_id]["invite_state"]["events"]
    by_type = {e["type"]: e for e in invited}
    assert by_type["m.room.name"]["content"] == {"name": "Secret"}
    assert by_type[c.MEMBER]["sender"] == alice["user_id"]

    # accepting: no via needed, the inviter's server is used
    resp = await b.post(f"/_matrix/client/v3/rooms/{q(room_id)}/join", json={}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    assert (await members(a, alice["access_token"], room_id))[bob["user_id"]] == "join"
    rooms = (await sync(b, token, since))["rooms"]
    assert room_id in rooms["join"] and room_id not in rooms["invite"]


async def test_reject_remote_invite(pair: Any) -> None:
    a, b, _ = pair
    alice = await register(a, "alice")
    carol = await register(b, "carol")
    token = carol["access_token"]
    room_id = await create_room(a, alice["access_token"], preset="private_chat")
    resp = await a.post(
        f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
        json={"user_id": carol["user_id"]},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200
    since = (await sync(b, token))["next_batch"]
    resp = await b.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", json={}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    assert (await members(a, alice["access_token"], room_id))[carol["user_id"]] == "leave"
    rooms = (await sync(b, token, since))["rooms"]
    assert room_id in rooms["leave"]
    assert room_id not in (await sync(b, token))["rooms"]["invite"]


async def test_knock_on_remote_room(pair: Any) -> None:
    a, b, _ = pair
    alice = await register(a, "alice")
    dave = await register(b, "dave")
    room_id = await create_room(a, alice["access_token"], preset="private_chat", name="Door")
    resp = await a.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.join_rules",
        json={"join_rule": "knock"},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200
    token = dave["access_token"]
    resp = await b.post(
        f"/_matrix/client/v3/knock/{q(room_id)}?via={A}", json={"reason": "let me in"}, headers=auth(token)
    )
    assert (resp.status, await resp.json()) == (200, {"room_id": room_id})
    assert (await members(a, alice["access_token"], room_id))[dave["user_id"]] == "knock"
    knocked = (await sync(b, token))["rooms"]["knock"][room_id]["knock_state"]["events"]
    by_type = {e["type"]: e for e in knocked}
    assert by_type["m.room.name"]["content"] == {"name": "Door"}
    assert by_type[c.MEMBER]["content"]["membership"] == "knock"


async def test_restricted_join_through_resident_server(pair: Any) -> None:
    a, b, _ = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    token = bob["access_token"]
    space = await create_room(a, alice["access_token"], preset="public_chat")
    restricted = await create_room(a, alice["access_token"], preset="private_chat")
    resp = await a.put(
        f"/_matrix/client/v3/rooms/{q(restricted)}/state/m.room.join_rules",
        json={"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200
    resp = await b.post(f"/_matrix/client/v3/join/{q(restricted)}?via={A}", json={}, headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    resp = await b.post(f"/_matrix/client/v3/join/{q(space)}?via={A}", json={}, headers=auth(token))
    assert resp.status == 200
    resp = await b.post(f"/_matrix/client/v3/join/{q(restricted)}?via={A}", json={}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    # B stored the join countersigned by A, naming alice as the authoriser
    snapshot = await services_of(b).state.get(restricted)
    assert snapshot is not None
    join = snapshot.get(c.MEMBER, bob["user_id"])
    assert join is not None and set(join.signatures) == {A, B}
    assert join.content[c.AUTHORISING_USER] == alice["user_id"]
    assert (await members(a, alice["access_token"], restricted))[bob["user_id"]] == "join"


async def test_rejoin_a_room_learnt_over_federation(pair: Any) -> None:
    a, b, feds = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    token = bob["access_token"]
    room_id = await create_room(a, alice["access_token"], preset="public_chat", name="Again")
    resp = await b.post(f"/_matrix/client/v3/join/{q(room_id)}?via={A}", json={}, headers=auth(token))
    assert resp.status == 200
    resp = await b.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", json={}, headers=auth(token))
    assert resp.status == 200
    assert (await members(b, token, room_id))[bob["user_id"]] == "leave"
    # No local member is left: joining again goes through a server of the room (A, known from
    # the room's state; no via given), and B persists the new join into the room it has.
    resp = await b.post(f"/_matrix/client/v3/join/{q(room_id)}", json={}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    send_joins = [d for m, d, p in feds[B].requests if "/send_join/" in p]
    assert send_joins == [A, A]
    # A never heard of the leave (sending it is the federation sender's job), so B holds a fork:
    # bob's leave and his new join; state resolution v2 orders the later join last.
    on_a = await services_of(a).state.get(room_id)
    on_b = await services_of(b).state.get(room_id)
    assert on_a is not None and on_b is not None
    new_join = on_a.get(c.MEMBER, bob["user_id"])
    assert new_join is not None and new_join.event_id in on_b.extremities
    assert (await members(b, token, room_id))[bob["user_id"]] == "join"
    resp = await b.get(f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.name", headers=auth(token))
    assert (resp.status, await resp.json()) == (200, {"name": "Again"})


async def test_invite_remote_user_failures(pair: Any) -> None:
    a, _, _ = pair
    alice = await register(a, "alice")
    token = alice["access_token"]
    room_id = await create_room(a, token, preset="private_chat")
    invite = f"/_matrix/client/v3/rooms/{q(room_id)}/invite"
    # the invitee's server refuses (no such user there): its error is passed on
    resp = await a.post(invite, json={"user_id": f"@nobody:{B}"}, headers=auth(token))
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    # the invitee's server cannot be reached
    resp = await a.post(invite, json={"user_id": "@x:dead.test"}, headers=auth(token))
    assert resp.status == 502
    # neither invite was stored
    assert set(await members(a, token, room_id)) == {alice["user_id"]}


async def test_join_remote_v12_room(pair: Any) -> None:
    """Room v12: the room id names no server (via is required) and the create event is in no
    event's auth_events."""
    a, b, _ = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    room_id = await create_room(
        a, alice["access_token"], preset="public_chat", room_version="12", name="Twelve"
    )
    assert ":" not in room_id
    resp = await b.post(f"/_matrix/client/v3/join/{q(room_id)}", json={}, headers=auth(bob["access_token"]))
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await b.post(
        f"/_matrix/client/v3/join/{q(room_id)}?via={A}", json={}, headers=auth(bob["access_token"])
    )
    assert resp.status == 200, await resp.text()
    assert (await members(a, alice["access_token"], room_id))[bob["user_id"]] == "join"
    resp = await b.get(
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.name", headers=auth(bob["access_token"])
    )
    assert (resp.status, await resp.json()) == (200, {"name": "Twelve"})


async def test_withdraw_knock_on_v12_room(pair: Any) -> None:
    """The knock's stripped state names the room's server (a v12 room id does not): withdrawing
    the knock reaches it without a via."""
    a, b, feds = pair
    alice = await register(a, "alice")
    dave = await register(b, "dave")
    room_id = await create_room(a, alice["access_token"], preset="private_chat", room_version="12")
    resp = await a.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.join_rules",
        json={"join_rule": "knock"},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200
    token = dave["access_token"]
    resp = await b.post(f"/_matrix/client/v3/knock/{q(room_id)}?via={A}", json={}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    resp = await b.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", json={}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    assert [d for m, d, p in feds[B].requests if "/send_leave/" in p] == [A]
    assert (await members(a, alice["access_token"], room_id))[dave["user_id"]] == "leave"
