"""The resident side of the membership handshakes, in process, with a fake remote server that signs
its requests and events: make_join/send_join (v2, omit_members), make_leave/send_leave,
make_knock/send_knock, restricted joins, and invites of our users (invite v2), with the bad inputs
(wrong room version, not allowed, unknown room, event id mismatch, forged signature, banned user,
an invite for another server's user)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signedjson.key import generate_signing_key

from homeserver.app import create_app_from_config
from homeserver.crypto.event_signing import verify_event_signature
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events import constants as c
from homeserver.events.room_versions import get_room_version

from ..conftest import make_config, services_of
from .fed_membership_helpers import REMOTE, REMOTE_KEY, FakeRemote, q, remote_event, trust
from .helpers import auth, register

SERVER = "test.local"
BOB = f"@bob:{REMOTE}"
V11 = get_room_version("11")
assert V11 is not None


async def start(aiohttp_client: Any, tmp_path: Path, engine_config: Any = None) -> Any:
    config = engine_config() if engine_config is not None else make_config(tmp_path)
    client = await aiohttp_client(create_app_from_config(config))
    trust(client, (REMOTE, REMOTE_KEY))
    return client


async def create_room(client: Any, token: str, **body: Any) -> str:
    resp = await client.post("/_matrix/client/v3/createRoom", json=body, headers=auth(token))
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["room_id"])


async def put_state(client: Any, token: str, room_id: str, etype: str, content: dict[str, Any]) -> None:
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/state/{etype}", json=content, headers=auth(token)
    )
    assert resp.status == 200, await resp.text()


async def members(client: Any, token: str, room_id: str) -> dict[str, str]:
    resp = await client.get(f"/_matrix/client/v3/rooms/{q(room_id)}/members", headers=auth(token))
    assert resp.status == 200, await resp.text()
    return {e["state_key"]: e["content"]["membership"] for e in (await resp.json())["chunk"]}


async def test_make_join_and_send_join(aiohttp_client: Any, engine_config: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, engine_config)
    alice = await register(client, "alice")
    token = alice["access_token"]
    room_id = await create_room(client, token, preset="public_chat", name="Lobby")
    remote = FakeRemote(client)

    status, body = await remote.make("make_join", room_id, BOB)
    assert status == 200, body
    template = body["event"]
    assert body["room_version"] == "11"
    assert (template["type"], template["sender"], template["state_key"]) == (c.MEMBER, BOB, BOB)
    assert template["content"] == {"membership": "join"} and template["room_id"] == room_id
    assert template["prev_events"] and template["auth_events"] and template["depth"] > 1

    event = remote.sign(V11, template)
    path = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event.event_id)}"
    status, body = await remote.request("PUT", path, event.pdu)
    assert status == 200, body
    assert body["members_omitted"] is False and "event" not in body
    state = {(e["type"], e["state_key"]): e for e in body["state"]}
    assert (c.CREATE, "") in state and (c.MEMBER, alice["user_id"]) in state
    assert (c.MEMBER, BOB) not in state  # the state *before* the join
    chain_types = {(e["type"], e.get("state_key")) for e in body["auth_chain"]}
    assert (c.CREATE, "") in chain_types and (c.POWER_LEVELS, "") in chain_types
    assert (await members(client, token, room_id))[BOB] == "join"

    # /sync of the local member shows the remote join in the timeline
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    timeline = (await resp.json())["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(e["type"] == c.MEMBER and e["state_key"] == BOB for e in timeline)

    # send_join again with the same event: idempotent
    status, again = await remote.request("PUT", path, event.pdu)
    assert status == 200 and len(again["state"]) == len(body["state"])


async def test_send_join_omit_members(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    carol = await register(client, "carol")
    named = await create_room(client, alice["access_token"], preset="public_chat", name="Named")
    unnamed = await create_room(client, alice["access_token"], preset="public_chat")
    for room_id in (named, unnamed):
        resp = await client.post(
            f"/_matrix/client/v3/join/{q(room_id)}", json={}, headers=auth(carol["access_token"])
        )
        assert resp.status == 200
    remote = FakeRemote(client)

    status, body, _ = await remote.handshake("join", named, BOB, omit_members="true")
    assert status == 200, body
    assert body["members_omitted"] is True and body["servers_in_room"] == [SERVER]
    assert not [e for e in body["state"] if e["type"] == c.MEMBER]
    # the members are still in the auth chain where they authorise something
    assert any(e["type"] == c.MEMBER for e in body["auth_chain"])
    state_ids = {(e["type"], e["state_key"]) for e in body["state"]}
    assert (c.CREATE, "") in state_ids and ("m.room.name", "") in state_ids

    # no name, no canonical alias: the heroes' member events are included
    status, body, _ = await remote.handshake("join", unnamed, f"@dave:{REMOTE}", omit_members="true")
    assert status == 200, body
    heroes = {e["state_key"] for e in body["state"] if e["type"] == c.MEMBER}
    assert heroes == {alice["user_id"], carol["user_id"]}


async def test_make_join_errors(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    public = await create_room(client, alice["access_token"], preset="public_chat")
    private = await create_room(client, alice["access_token"], preset="private_chat")
    remote = FakeRemote(client)

    status, body = await remote.make("make_join", public, BOB, versions=["1", "2"])
    assert (status, body["errcode"], body["room_version"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION", "11")
    status, body = await remote.make("make_join", public, BOB, versions=[])  # defaults to ["1"]
    assert (status, body["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    status, body = await remote.make("make_join", private, BOB)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await remote.make("make_join", f"!nowhere:{SERVER}", BOB)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # a user of another server than the one asking
    status, body = await remote.make("make_join", public, "@mallory:elsewhere.example")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # unsigned
    resp = await client.get(f"/_matrix/federation/v1/make_join/{q(public)}/{q(BOB)}?ver=10")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNAUTHORIZED")
    # a server the room's ACL denies
    await put_state(
        client, alice["access_token"], public, "m.room.server_acl", {"allow": [SERVER], "deny": []}
    )
    status, body = await remote.make("make_join", public, BOB)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_send_join_bad_inputs(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    token = alice["access_token"]
    room_id = await create_room(client, token, preset="public_chat")
    remote = FakeRemote(client)
    status, body = await remote.make("make_join", room_id, BOB)
    assert status == 200
    template = body["event"]
    event = remote.sign(V11, template)
    base = f"/_matrix/federation/v2/send_join/{q(room_id)}"

    # the path's event id is not the event's
    other = remote.sign(V11, {**template, "origin_server_ts": template["origin_server_ts"] + 1})
    status, body = await remote.request("PUT", f"{base}/{q(other.event_id)}", event.pdu)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # signed with a key that is not the remote server's
    forged_key = ServerSigningKey.from_signing_key(generate_signing_key("r1"))
    forged = remote_event(
        V11, room_id=room_id, sender=BOB, state_key=BOB, content={"membership": "join"}, key=forged_key
    )
    status, body = await remote.request("PUT", f"{base}/{q(forged.event_id)}", forged.pdu)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # not a join
    leave = remote.sign(V11, template, membership="leave")
    status, body = await remote.request("PUT", f"{base}/{q(leave.event_id)}", leave.pdu)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # not an event at all
    status, body = await remote.request("PUT", f"{base}/{q(event.event_id)}", [1, 2])
    assert status == 400
    # banned between make_join and send_join: the auth rules refuse it
    resp = await client.post(
        f"/_matrix/client/v3/rooms/{q(room_id)}/ban", json={"user_id": BOB}, headers=auth(token)
    )
    assert resp.status == 200
    status, body = await remote.request("PUT", f"{base}/{q(event.event_id)}", event.pdu)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await remote.make("make_join", room_id, BOB)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await members(client, token, room_id))[BOB] == "ban"


async def test_leave_handshake(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    token = alice["access_token"]
    room_id = await create_room(client, token, preset="public_chat")
    remote = FakeRemote(client)
    status, _, _ = await remote.handshake("join", room_id, BOB)
    assert status == 200
    status, body, _event = await remote.handshake("leave", room_id, BOB)
    assert (status, body) == (200, {})
    assert (await members(client, token, room_id))[BOB] == "leave"
    # a leave for someone never in the room is refused by the auth rules
    status, body = await remote.make("make_leave", room_id, f"@ghost:{REMOTE}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_knock_handshake(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    token = alice["access_token"]
    room_id = await create_room(client, token, preset="private_chat", name="Knockable")
    remote = FakeRemote(client)
    status, body = await remote.make("make_knock", room_id, BOB)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")  # invite-only: no knocking
    await put_state(client, token, room_id, c.JOIN_RULES, {"join_rule": "knock"})
    status, body = await remote.make("make_knock", room_id, BOB, versions=["9"])
    assert (status, body["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    status, body, _ = await remote.handshake("knock", room_id, BOB)
    assert status == 200, body
    stripped = {(e["type"], e["state_key"]): e["content"] for e in body["knock_room_state"]}
    assert stripped[("m.room.name", "")] == {"name": "Knockable"}
    assert (c.JOIN_RULES, "") in stripped
    assert (await members(client, token, room_id))[BOB] == "knock"


async def test_restricted_join(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    alice = await register(client, "alice")
    token = alice["access_token"]
    space = await create_room(client, token, preset="public_chat", name="Space")
    restricted = await create_room(client, token, preset="private_chat")
    allow = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
    await put_state(client, token, restricted, c.JOIN_RULES, allow)
    remote = FakeRemote(client)

    # not in the space yet
    status, body = await remote.make("make_join", restricted, BOB)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, _, _ = await remote.handshake("join", space, BOB)
    assert status == 200
    status, body = await remote.make("make_join", restricted, BOB)
    assert status == 200, body
    assert body["event"]["content"][c.AUTHORISING_USER] == alice["user_id"]
    status, body, _event = await remote.handshake("join", restricted, BOB)
    assert status == 200, body
    # our countersigned copy of the join
    signed = body["event"]
    own = services_of(client).signing_key
    verify_event_signature(V11, signed, SERVER, own.key_id, own.verify_key)  # raises if bad
    assert REMOTE in signed["signatures"] and SERVER in signed["signatures"]
    assert (await members(client, token, restricted))[BOB] == "join"

    # an allowed room this server is not in: cannot authorise
    unknown = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": f"!x:{REMOTE}"}]}
    await put_state(client, token, restricted, c.JOIN_RULES, unknown)
    status, body = await remote.make("make_join", restricted, f"@erin:{REMOTE}")
    assert (status, body["errcode"]) == (400, "M_UNABLE_TO_AUTHORISE_JOIN")


# -- invites ---------------------------------------------------------------------------------------


def _invite_body(event: Any, stripped: list[dict[str, Any]], version: str = "11") -> dict[str, Any]:
    return {"room_version": version, "event": event.pdu, "invite_room_state": stripped}


async def test_invite_of_local_user(aiohttp_client: Any, engine_config: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path, engine_config)
    carol = await register(client, "carol")
    carol_id, token = carol["user_id"], carol["access_token"]
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    since = (await resp.json())["next_batch"]
    room_id = f"!party:{REMOTE}"
    stripped = [
        {"type": c.CREATE, "state_key": "", "sender": BOB, "content": {"room_version": "11"}},
        {"type": "m.room.name", "state_key": "", "sender": BOB, "content": {"name": "Party"}},
    ]
    invite = remote_event(
        V11, room_id=room_id, sender=BOB, state_key=carol_id, content={"membership": "invite"}
    )
    remote = FakeRemote(client)
    status, body = await remote.request(
        "PUT",
        f"/_matrix/federation/v2/invite/{q(room_id)}/{q(invite.event_id)}",
        _invite_body(invite, stripped),
    )
    assert status == 200, body
    signed = body["event"]
    assert set(signed["signatures"]) == {REMOTE, SERVER}
    assert signed["content"] == {"membership": "invite"} and "unsigned" not in signed

    resp = await client.get(f"/_matrix/client/v3/sync?since={since}&timeout=0", headers=auth(token))
    sync = await resp.json()
    invite_state = sync["rooms"]["invite"][room_id]["invite_state"]["events"]
    by_type = {e["type"]: e for e in invite_state}
    assert by_type["m.room.name"]["content"] == {"name": "Party"}
    assert by_type[c.MEMBER]["state_key"] == carol_id and by_type[c.MEMBER]["sender"] == BOB
    # an initial sync too
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    assert room_id in (await resp.json())["rooms"]["invite"]

    # rejecting it while the inviting server is unreachable: rejected locally
    services_of(client).membership.remote.client = _Unreachable()  # type: ignore[union-attr,assignment]
    since = (await resp.json())["next_batch"]
    resp = await client.post(f"/_matrix/client/v3/rooms/{q(room_id)}/leave", json={}, headers=auth(token))
    assert resp.status == 200, await resp.text()
    resp = await client.get(f"/_matrix/client/v3/sync?since={since}&timeout=0", headers=auth(token))
    rooms = (await resp.json())["rooms"]
    assert room_id in rooms["leave"] and room_id not in rooms["invite"]
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    assert room_id not in (await resp.json())["rooms"]["invite"]


class _Unreachable:
    async def get_json(self, destination: str, *_a: Any, **_kw: Any) -> Any:
        from homeserver.federation.client import RequestSendFailed

        raise RequestSendFailed(destination, "connection refused")

    async def request(self, method: str, destination: str, *_a: Any, **_kw: Any) -> Any:
        return await self.get_json(destination)


async def test_invite_bad_inputs(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    carol = await register(client, "carol")
    carol_id = carol["user_id"]
    room_id = f"!party:{REMOTE}"
    remote = FakeRemote(client)

    async def put(
        event: Any, body: dict[str, Any] | None = None, event_id: str | None = None
    ) -> tuple[int, Any]:
        path = f"/_matrix/federation/v2/invite/{q(room_id)}/{q(event_id or event.event_id)}"
        return await remote.request("PUT", path, body if body is not None else _invite_body(event, []))

    invite = remote_event(
        V11, room_id=room_id, sender=BOB, state_key=carol_id, content={"membership": "invite"}
    )
    # a room version we do not know
    status, body = await put(invite, _invite_body(invite, [], version="999"))
    assert (status, body["errcode"], body["room_version"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION", "999")
    # event id mismatch
    status, body = await put(invite, event_id="$not-it")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # for a user of another server
    other = remote_event(
        V11, room_id=room_id, sender=BOB, state_key="@x:elsewhere.example", content={"membership": "invite"}
    )
    status, body = await put(other)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # for a local user who does not exist
    ghost = remote_event(
        V11, room_id=room_id, sender=BOB, state_key=f"@ghost:{SERVER}", content={"membership": "invite"}
    )
    status, body = await put(ghost)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # not an invite
    join = remote_event(V11, room_id=room_id, sender=BOB, state_key=carol_id, content={"membership": "join"})
    status, body = await put(join)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # forged signature
    forged_key = ServerSigningKey.from_signing_key(generate_signing_key("r1"))
    forged = remote_event(
        V11, room_id=room_id, sender=BOB, state_key=carol_id, content={"membership": "invite"}, key=forged_key
    )
    status, body = await put(forged)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # an inviter of another server than the origin (validly signed by that server)
    elsewhere_key = ServerSigningKey.from_signing_key(generate_signing_key("e1"))
    trust(client, (REMOTE, REMOTE_KEY), ("elsewhere.example", elsewhere_key))
    spoof = remote_event(
        V11,
        room_id=room_id,
        sender="@eve:elsewhere.example",
        state_key=carol_id,
        content={"membership": "invite"},
        key=elsewhere_key,
        server="elsewhere.example",
    )
    status, body = await put(spoof)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # malformed bodies
    for bad in ({}, {"room_version": "10"}, {"room_version": "10", "event": "x"}):
        status, body = await put(invite, bad)
        assert status == 400, bad
    # none of it reached carol
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(carol["access_token"]))
    assert (await resp.json())["rooms"]["invite"] == {}


async def test_invite_from_ignored_user_is_hidden(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await start(aiohttp_client, tmp_path)
    carol = await register(client, "carol")
    carol_id, token = carol["user_id"], carol["access_token"]
    resp = await client.put(
        f"/_matrix/client/v3/user/{q(carol_id)}/account_data/m.ignored_user_list",
        json={"ignored_users": {BOB: {}}},
        headers=auth(token),
    )
    assert resp.status == 200
    remote = FakeRemote(client)
    rooms = [f"!ignored:{REMOTE}", f"!welcome:{REMOTE}"]
    for room_id, sender in zip(rooms, (BOB, f"@rita:{REMOTE}"), strict=True):
        invite = remote_event(
            V11, room_id=room_id, sender=sender, state_key=carol_id, content={"membership": "invite"}
        )
        path = f"/_matrix/federation/v2/invite/{q(room_id)}/{q(invite.event_id)}"
        status, body = await remote.request("PUT", path, _invite_body(invite, []))
        assert status == 200, body
    resp = await client.get("/_matrix/client/v3/sync", headers=auth(token))
    assert set((await resp.json())["rooms"]["invite"]) == {rooms[1]}
