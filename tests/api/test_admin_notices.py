"""Server notices in process: the broadcast extension (to a space and its child rooms, and to
every local user) as a background job with a status endpoint, notices when not configured, and
the background-updates status built from our jobs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config

from ..conftest import make_config, services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"
ADMIN = "/_synapse/admin/v1"
NOTICES = {"system_mxid_localpart": "notices", "system_mxid_display_name": "Notices", "room_name": "Notices"}


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(create_app_from_config(make_config(tmp_path, server_notices=NOTICES)))


@pytest.fixture
async def plain_client(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(create_app_from_config(make_config(tmp_path)))


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def create_room(client: Any, token: str, **body: Any) -> str:
    return str((await ok(await client.post(f"{V3}/createRoom", json=body, headers=auth(token))))["room_id"])


async def join(client: Any, token: str, room_id: str) -> None:
    await ok(await client.post(f"{V3}/join/{room_id}", json={}, headers=auth(token)))


async def wait_broadcast(client: Any, token: str, job_id: str) -> dict[str, Any]:
    """Poll the status endpoint until the job ends (the runner yields between batches)."""
    for _ in range(2000):
        body: dict[str, Any] = await ok(
            await client.get(f"{ADMIN}/broadcast_server_notice/{job_id}", headers=auth(token))
        )
        if body["status"] in ("complete", "failed"):
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"broadcast {job_id} did not finish: {body}")


async def notices_received(client: Any, user_id: str) -> list[str]:
    """Bodies of the notices in the user's notices room (read through the admin store)."""
    services = services_of(client)
    room_id = await services.server_notices.store.get_notice_room(user_id)
    if room_id is None:
        return []
    rows = await services.db.fetch(
        "SELECT json FROM events WHERE room_id = $1 AND type = 'm.room.message' ORDER BY stream_ordering",
        room_id,
    )
    return [json.loads(r[0])["content"]["body"] for r in rows]


async def test_broadcast_to_a_space_and_its_children(client: Any) -> None:
    admin = await register(client, admin=True)
    teacher = await register(client)
    parent_a = await register(client)
    parent_b = await register(client)
    outsider = await register(client)
    space = await create_room(
        client, teacher["access_token"], preset="public_chat", creation_content={"type": "m.space"}
    )
    child = await create_room(client, teacher["access_token"], preset="public_chat")
    await ok(
        await client.put(
            f"{V3}/rooms/{space}/state/m.space.child/{child}",
            json={"via": ["test.local"]},
            headers=auth(teacher["access_token"]),
        )
    )
    await join(client, parent_a["access_token"], space)
    await join(client, parent_b["access_token"], child)

    # Non-admins are refused before anything else.
    resp = await client.post(
        f"{ADMIN}/broadcast_server_notice", json={}, headers=auth(teacher["access_token"])
    )
    assert resp.status == 403 and (await resp.json())["errcode"] == "M_FORBIDDEN"

    content = {"msgtype": "m.text", "body": "School closed tomorrow"}
    started = await ok(
        await client.post(
            f"{ADMIN}/broadcast_server_notice",
            json={"room_id": space, "content": content},
            headers=auth(admin["access_token"]),
        )
    )
    assert started["total"] == 3  # teacher, parent_a (space) and parent_b (child room)
    status = await wait_broadcast(client, admin["access_token"], started["job_id"])
    assert status == {
        "job_id": started["job_id"],
        "status": "complete",
        "sent": 3,
        "failed": 0,
        "failed_users": [],
        "room_id": space,
        "total": 3,
    }
    for member in (teacher, parent_a, parent_b):
        assert await notices_received(client, member["user_id"]) == ["School closed tomorrow"]
    assert await notices_received(client, outsider["user_id"]) == []
    assert await notices_received(client, admin["user_id"]) == []

    # To everyone: every local account, the same notices room as before for those who have one.
    everyone = await ok(
        await client.post(
            f"{ADMIN}/broadcast_server_notice",
            json={"content": {"msgtype": "m.text", "body": "Hello all"}},
            headers=auth(admin["access_token"]),
        )
    )
    status = await wait_broadcast(client, admin["access_token"], everyone["job_id"])
    assert status["status"] == "complete" and status["sent"] == 5 and status["failed"] == 0, status
    assert await notices_received(client, parent_a["user_id"]) == ["School closed tomorrow", "Hello all"]
    assert await notices_received(client, outsider["user_id"]) == ["Hello all"]


async def test_broadcast_bad_requests(client: Any) -> None:
    admin = await register(client, admin=True)
    token = admin["access_token"]
    url = f"{ADMIN}/broadcast_server_notice"
    for body, errcode in (
        ({}, "M_MISSING_PARAM"),
        ({"content": "text"}, "M_BAD_JSON"),
        ({"content": {}, "room_id": "not-a-room"}, "M_INVALID_PARAM"),
    ):
        resp = await client.post(url, json=body, headers=auth(token))
        assert resp.status == 400 and (await resp.json())["errcode"] == errcode, body
    resp = await client.post(url, json={"content": {}, "room_id": "!nope:test.local"}, headers=auth(token))
    assert resp.status == 404
    resp = await client.get(f"{url}/unknown", headers=auth(token))
    assert resp.status == 404


async def test_notices_not_configured(plain_client: Any) -> None:
    admin = await register(plain_client, admin=True)
    user = await register(plain_client)
    body = {"user_id": user["user_id"], "content": {"msgtype": "m.text", "body": "x"}}
    resp = await plain_client.post(
        f"{ADMIN}/send_server_notice", json=body, headers=auth(admin["access_token"])
    )
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_UNKNOWN"
    resp = await plain_client.post(
        f"{ADMIN}/broadcast_server_notice", json={"content": {}}, headers=auth(admin["access_token"])
    )
    assert resp.status == 400 and (await resp.json())["errcode"] == "M_UNKNOWN"


async def test_background_updates_status(plain_client: Any) -> None:
    admin = await register(plain_client, admin=True)
    user = await register(plain_client)
    resp = await plain_client.get(f"{ADMIN}/background_updates/status", headers=auth(user["access_token"]))
    assert resp.status == 403
    body = await ok(
        await plain_client.get(f"{ADMIN}/background_updates/status", headers=auth(admin["access_token"]))
    )
    assert body == {"enabled": True, "current_updates": {}}
