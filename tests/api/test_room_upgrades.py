"""POST /rooms/{roomId}/upgrade, on both engines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import create_app_from_config
from homeserver.services.room_upgrades import fixup_power_levels

from .helpers import auth, register

V3 = "/_matrix/client/v3"
ALLOW_PUBLISH = {"room_list_publication_rules": [{"action": "allow"}]}

ClientFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def client(aiohttp_client: Any, engine_config: Any) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**ALLOW_PUBLISH)))


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def expect_error(resp: Any, status: int, errcode: str) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert body["errcode"] == errcode, body
    return dict(body)


async def create_room(client: Any, token: str, **body: Any) -> str:
    data = await ok(await client.post(f"{V3}/createRoom", json=body, headers=auth(token)))
    return str(data["room_id"])


async def upgrade(client: Any, token: str, room_id: str, version: str = "11") -> Any:
    return await client.post(
        f"{V3}/rooms/{room_id}/upgrade", json={"new_version": version}, headers=auth(token)
    )


async def state(client: Any, token: str, room_id: str, etype: str, key: str = "") -> Any:
    resp = await client.get(f"{V3}/rooms/{room_id}/state/{etype}/{key}", headers=auth(token))
    return resp.status, await resp.json()


async def all_state(client: Any, token: str, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    events = await ok(await client.get(f"{V3}/rooms/{room_id}/state", headers=auth(token)))
    return {(e["type"], e["state_key"]): e for e in events}


async def join(client: Any, token: str, room_id: str) -> None:
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(token)))


async def send_text(client: Any, token: str, room_id: str, text: str, txn: str) -> Any:
    return await client.put(
        f"{V3}/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.text", "body": text},
        headers=auth(token),
    )


async def test_upgrade_replaces_the_room(client: Any) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    dave = await register(client, "dave")
    room_id = await create_room(
        client,
        alice["access_token"],
        room_version="10",
        preset="public_chat",
        visibility="public",
        name="Team room",
        topic="Plans",
        room_alias_name="team",
        initial_state=[
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "m.room.avatar", "content": {"url": "mxc://test.local/avatar"}},
            {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["evil.example"]}},
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
            {"type": "m.room.pinned_events", "content": {"pinned": []}},
        ],
        power_level_content_override={"users": {alice["user_id"]: 100, bob["user_id"]: 50}},
    )
    alias = "#team:test.local"
    await ok(
        await client.put(
            f"{V3}/directory/room/{quote('#team2:test.local')}",
            json={"room_id": room_id},
            headers=auth(alice["access_token"]),
        )
    )
    await ok(
        await client.put(
            f"{V3}/rooms/{room_id}/state/m.room.canonical_alias",
            json={"alias": alias, "alt_aliases": ["#team2:test.local", "#elsewhere:remote.example"]},
            headers=auth(alice["access_token"]),
        )
    )
    for user in (bob, carol, dave):
        await join(client, user["access_token"], room_id)
    await ok(
        await client.post(
            f"{V3}/rooms/{room_id}/ban",
            json={"user_id": carol["user_id"], "reason": "spam"},
            headers=auth(alice["access_token"]),
        )
    )
    # Alice's personal settings for the room follow it.
    await ok(
        await client.put(
            f"{V3}/user/{alice['user_id']}/rooms/{room_id}/tags/u.work",
            json={"order": 0.5},
            headers=auth(alice["access_token"]),
        )
    )
    await ok(
        await client.put(
            f"{V3}/user/{alice['user_id']}/account_data/m.direct",
            json={bob["user_id"]: [room_id]},
            headers=auth(alice["access_token"]),
        )
    )
    await ok(
        await client.put(
            f"{V3}/pushrules/global/override/{room_id}",
            json={
                "actions": [],
                "conditions": [{"kind": "event_match", "key": "room_id", "pattern": room_id}],
            },
            headers=auth(alice["access_token"]),
        )
    )
    await ok(
        await client.put(
            f"{V3}/pushrules/global/room/{room_id}", json={"actions": []}, headers=auth(alice["access_token"])
        )
    )
    last = await ok(await send_text(client, bob["access_token"], room_id, "last words", "t1"))

    body = await ok(await upgrade(client, alice["access_token"], room_id, "11"))
    new_room = body["replacement_room"]
    assert new_room != room_id and new_room.startswith("!")

    token = alice["access_token"]
    new_state = await all_state(client, token, new_room)
    create = new_state[("m.room.create", "")]["content"]
    assert create["room_version"] == "11"
    assert create["predecessor"] == {"room_id": room_id, "event_id": last["event_id"]}
    assert "creator" not in create  # v11
    assert new_state[("m.room.name", "")]["content"] == {"name": "Team room"}
    assert new_state[("m.room.topic", "")]["content"]["topic"] == "Plans"
    assert new_state[("m.room.avatar", "")]["content"] == {"url": "mxc://test.local/avatar"}
    assert new_state[("m.room.encryption", "")]["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert new_state[("m.room.server_acl", "")]["content"]["deny"] == ["evil.example"]
    assert new_state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    assert new_state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "joined"}
    assert new_state[("m.room.guest_access", "")]["content"] == {"guest_access": "forbidden"}
    assert ("m.room.pinned_events", "") not in new_state  # not a transferred type
    pl = new_state[("m.room.power_levels", "")]["content"]
    assert pl["users"] == {alice["user_id"]: 100, bob["user_id"]: 50}
    assert pl["events_default"] == 0 and pl["invite"] == 0
    # Members do not move, bans do.
    members = {k[1]: e["content"]["membership"] for k, e in new_state.items() if k[0] == "m.room.member"}
    assert members == {alice["user_id"]: "join", carol["user_id"]: "ban"}
    assert new_state[("m.room.member", carol["user_id"])]["content"].get("reason") == "spam"
    # The canonical alias and the local aliases moved; the remote one stayed behind.
    assert new_state[("m.room.canonical_alias", "")]["content"] == {
        "alias": alias,
        "alt_aliases": ["#team2:test.local"],
    }
    for local_alias in (alias, "#team2:test.local"):
        found = await ok(await client.get(f"{V3}/directory/room/{quote(local_alias)}"))
        assert found["room_id"] == new_room

    old_state = await all_state(client, token, room_id)
    tombstone = old_state[("m.room.tombstone", "")]
    assert tombstone["content"]["replacement_room"] == new_room
    assert isinstance(tombstone["content"]["body"], str)
    assert old_state[("m.room.canonical_alias", "")]["content"] == {
        "alt_aliases": ["#elsewhere:remote.example"]
    }
    old_pl = old_state[("m.room.power_levels", "")]["content"]
    assert old_pl["events_default"] == 50 and old_pl["invite"] == 50
    # Ordinary members can no longer talk in the old room.
    await expect_error(
        await send_text(client, dave["access_token"], room_id, "hello?", "t2"), 403, "M_FORBIDDEN"
    )

    # The directory lists the new room instead of the old one.
    vis_new = await ok(await client.get(f"{V3}/directory/list/room/{new_room}"))
    vis_old = await ok(await client.get(f"{V3}/directory/list/room/{room_id}"))
    assert (vis_new["visibility"], vis_old["visibility"]) == ("public", "private")

    tags = await ok(
        await client.get(f"{V3}/user/{alice['user_id']}/rooms/{new_room}/tags", headers=auth(token))
    )
    assert tags["tags"] == {"u.work": {"order": 0.5}}
    direct = await ok(
        await client.get(f"{V3}/user/{alice['user_id']}/account_data/m.direct", headers=auth(token))
    )
    assert direct == {bob["user_id"]: [room_id, new_room]}
    override = await ok(await client.get(f"{V3}/pushrules/global/override/{new_room}", headers=auth(token)))
    assert override["conditions"] == [{"kind": "event_match", "key": "room_id", "pattern": new_room}]
    await ok(await client.get(f"{V3}/pushrules/global/room/{new_room}", headers=auth(token)))

    # Members follow the tombstone.
    await join(client, dave["access_token"], new_room)
    await ok(await send_text(client, dave["access_token"], new_room, "moved in", "t3"))
    # The banned user cannot.
    resp = await client.post(f"{V3}/join/{new_room}", json={}, headers=auth(carol["access_token"]))
    assert resp.status == 403


async def test_upgrade_errors(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    outsider = await register(client)
    room_id = await create_room(client, alice["access_token"], preset="public_chat")
    await join(client, bob["access_token"], room_id)

    for version in ("1", "999"):
        await expect_error(
            await upgrade(client, alice["access_token"], room_id, version), 400, "M_UNSUPPORTED_ROOM_VERSION"
        )
    resp = await client.post(f"{V3}/rooms/{room_id}/upgrade", json={}, headers=auth(alice["access_token"]))
    await expect_error(resp, 400, "M_MISSING_PARAM")
    resp = await client.post(
        f"{V3}/rooms/{room_id}/upgrade", json={"new_version": 10}, headers=auth(alice["access_token"])
    )
    await expect_error(resp, 400, "M_UNSUPPORTED_ROOM_VERSION")
    # Joined but without the power to send m.room.tombstone; not joined at all.
    await expect_error(await upgrade(client, bob["access_token"], room_id), 403, "M_FORBIDDEN")
    await expect_error(await upgrade(client, outsider["access_token"], room_id), 403, "M_FORBIDDEN")
    await expect_error(
        await upgrade(client, alice["access_token"], "!nowhere:test.local"), 404, "M_NOT_FOUND"
    )
    resp = await client.post(f"{V3}/rooms/{room_id}/upgrade", json={"new_version": "11"})
    await expect_error(resp, 401, "M_MISSING_TOKEN")
    # Nothing happened to the room.
    status, _ = await state(client, alice["access_token"], room_id, "m.room.tombstone")
    assert status == 404


async def test_upgrade_raises_the_upgrader_only_temporarily(client: Any) -> None:
    alice = await register(client)
    token = alice["access_token"]
    room_id = await create_room(
        client,
        token,
        preset="private_chat",
        # Sending m.room.tombstone needs 100, but a custom state event needs 150: the upgrader is
        # lifted to 150 to copy the state, then put back.
        power_level_content_override={"events": {"m.room.tombstone": 100, "org.example.locked": 150}},
    )
    body = await ok(await upgrade(client, token, room_id))
    new_room = body["replacement_room"]
    _, pl = await state(client, token, new_room, "m.room.power_levels")
    assert pl["users"] == {alice["user_id"]: 100}
    assert pl["events"]["org.example.locked"] == 150
    messages = await ok(
        await client.get(
            f"{V3}/rooms/{new_room}/messages",
            params={"dir": "f", "limit": "50"},
            headers=auth(token),
        )
    )
    levels = [
        e["content"]["users"][alice["user_id"]]
        for e in messages["chunk"]
        if e["type"] == "m.room.power_levels"
    ]
    assert levels == [150, 100]
    # private_chat rooms: join rules and guest access carry over.
    new_state = await all_state(client, token, new_room)
    assert new_state[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
    assert new_state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}


async def test_upgrade_fixes_string_power_levels_and_keeps_room_type(client: Any) -> None:
    alice = await register(client)
    token = alice["access_token"]
    space = await create_room(
        client,
        token,
        room_version="9",
        creation_content={"type": "m.space", "m.federate": False},
        power_level_content_override={"ban": "60", "users": {alice["user_id"]: "100"}},
    )
    child = await create_room(client, token)
    await ok(
        await client.put(
            f"{V3}/rooms/{space}/state/m.space.child/{child}",
            json={"via": ["test.local"]},
            headers=auth(token),
        )
    )
    removed = await create_room(client, token)
    await ok(
        await client.put(f"{V3}/rooms/{space}/state/m.space.child/{removed}", json={}, headers=auth(token))
    )
    new_space = (await ok(await upgrade(client, token, space, "10")))["replacement_room"]
    new_state = await all_state(client, token, new_space)
    create = new_state[("m.room.create", "")]["content"]
    assert create["type"] == "m.space"
    assert create["m.federate"] is False
    assert create["creator"] == alice["user_id"]  # v10 still names the creator
    pl = new_state[("m.room.power_levels", "")]["content"]
    assert pl["ban"] == 60 and pl["users"] == {alice["user_id"]: 100}
    assert new_state[("m.space.child", child)]["content"] == {"via": ["test.local"]}
    assert ("m.space.child", removed) not in new_state


async def test_concurrent_upgrades_by_one_user_create_one_room(client: Any) -> None:
    alice = await register(client)
    token = alice["access_token"]
    room_id = await create_room(client, token)
    first, second = await asyncio.gather(upgrade(client, token, room_id), upgrade(client, token, room_id))
    one = await ok(first)
    two = await ok(second)
    assert one["replacement_room"] == two["replacement_room"]
    # A retry after completion (a lost response) gets the same room too, as Synapse's cache does.
    again = await ok(await upgrade(client, token, room_id))
    assert again["replacement_room"] == one["replacement_room"]


def test_fixup_power_levels() -> None:
    content = {
        "ban": "50",
        "kick": 50,
        "redact": None,
        "invite": 1.5,
        "users": {"@a:x": "100", "@b:x": [], "not-a-user": 10},
        "events": {"m.room.name": " 60 ", "m.bad": "x"},
        "notifications": {"room": 50},
    }
    assert fixup_power_levels(content) == {
        "ban": 50,
        "kick": 50,
        "users": {"@a:x": 100},
        "events": {"m.room.name": 60},
        "notifications": {"room": 50},
    }
