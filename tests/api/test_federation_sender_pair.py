"""Two in-process servers of ours, end to end: A's sender delivers to B's PUT /send and back.

A user of B joins a room of A; messages go both ways, and typing, to-device messages and device
keys of A's user reach B's client. Every outbound request of both servers goes through the
in-process federation of the membership tests (tests/api/fed_membership_helpers.py, from the
fed-membership work); without those helpers this module is skipped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config

from ..conftest import make_config, services_of
from .helpers import auth, register
from .test_federation_sender import _device_keys

helpers = pytest.importorskip(
    "tests.api.fed_membership_helpers", reason="needs the fed-membership test helpers"
)

A, B = "a.test", "b.test"


@pytest.fixture
async def pair(aiohttp_client: Any, tmp_path: Path) -> Any:
    clients = {}
    for name in (A, B):
        (tmp_path / name).mkdir()
        config = make_config(
            tmp_path / name, server_name=name, signing_key_path=str(tmp_path / name / "signing.key")
        )
        clients[name] = await aiohttp_client(create_app_from_config(config))
    for name, client in clients.items():
        services = services_of(client)
        other = B if name == A else A
        helpers.trust(client, (other, services_of(clients[other]).signing_key))
        fed = helpers.InProcessFederation(name, services.signing_key, {other: clients[other]})
        # every outbound request of this server (sender, joins, backfill, key queries) in process
        services.federation_client.request = fed.request  # type: ignore[method-assign]
        if services.membership.remote is not None:
            services.membership.remote.client = fed
        services.remote_queries.client = fed
    return clients[A], clients[B]


async def _settle(*clients: Any) -> None:
    for _ in range(3):
        for client in clients:
            services = services_of(client)
            await services.federation_edus_out.drain()
            assert services.federation_sender is not None
            await services.federation_sender.drained()


async def _bodies(client: Any, token: str, room_id: str) -> list[str]:
    resp = await client.get(f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b", headers=auth(token))
    return [e["content"].get("body") for e in (await resp.json())["chunk"] if e["type"] == "m.room.message"]


async def _eventually(check: Any) -> None:
    """The receiving side handles a transaction's PDUs after answering it."""
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def test_two_servers_talk_through_the_sender(pair: Any) -> None:
    a, b = pair
    alice = await register(a, "alice")
    bob = await register(b, "bob")
    resp = await a.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(alice["access_token"])
    )
    room_id = (await resp.json())["room_id"]
    q_room = helpers.q(room_id)
    resp = await b.post(
        f"/_matrix/client/v3/join/{q_room}?server_name={A}", json={}, headers=auth(bob["access_token"])
    )
    assert resp.status == 200, await resp.text()
    resp = await b.get("/_matrix/client/v3/sync", headers=auth(bob["access_token"]))
    since = (await resp.json())["next_batch"]

    for client, user, body in ((a, alice, "hi bob"), (b, bob, "hi alice")):
        resp = await client.put(
            f"/_matrix/client/v3/rooms/{q_room}/send/m.room.message/{body}",
            json={"msgtype": "m.text", "body": body},
            headers=auth(user["access_token"]),
        )
        assert resp.status == 200
    await _settle(a, b)

    async def bob_sees() -> bool:
        return "hi bob" in await _bodies(b, bob["access_token"], q_room)

    async def alice_sees() -> bool:
        return "hi alice" in await _bodies(a, alice["access_token"], q_room)

    await _eventually(bob_sees)
    await _eventually(alice_sees)

    resp = await a.put(
        f"/_matrix/client/v3/rooms/{q_room}/typing/{helpers.q(alice['user_id'])}",
        json={"typing": True, "timeout": 30000},
        headers=auth(alice["access_token"]),
    )
    assert resp.status == 200
    resp = await a.put("/_matrix/client/v3/sendToDevice/m.test/x1",
                       json={"messages": {bob["user_id"]: {bob["device_id"]: {"hello": 1}}}},
                       headers=auth(alice["access_token"]))  # fmt: skip
    assert resp.status == 200
    resp = await a.post("/_matrix/client/v3/keys/upload",
                        json={"device_keys": _device_keys(alice["user_id"], alice["device_id"], 7)},
                        headers=auth(alice["access_token"]))  # fmt: skip
    assert resp.status == 200
    await _settle(a, b)

    async def bob_synced() -> bool:
        resp = await b.get(
            f"/_matrix/client/v3/sync?since={since}&timeout=0", headers=auth(bob["access_token"])
        )
        body = await resp.json()
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        typing = [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == "m.typing"]
        to_device = body.get("to_device", {}).get("events", [])
        return (
            bool(typing and alice["user_id"] in typing[-1]["content"]["user_ids"])
            and any(e["type"] == "m.test" and e["sender"] == alice["user_id"] for e in to_device)
            and alice["user_id"] in body.get("device_lists", {}).get("changed", [])
        )

    await _eventually(bob_synced)
    resp = await b.post("/_matrix/client/v3/keys/query", json={"device_keys": {alice["user_id"]: []}},
                        headers=auth(bob["access_token"]))  # fmt: skip
    keys = (await resp.json())["device_keys"][alice["user_id"]][alice["device_id"]]["keys"]
    assert keys[f"curve25519:{alice['device_id']}"] == "c7"
