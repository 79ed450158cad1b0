"""A room deletion stopped by a server shutdown half-way through kicking members resumes at the
next start and completes exactly once: every member removed once, the room purged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from homeserver.app import create_app_from_config
from homeserver.jobs.runner import Step
from homeserver.services import room_deletion
from homeserver.storage.stores.jobs import Job

from ..conftest import make_config, services_of
from .helpers import auth, register

V3 = "/_matrix/client/v3"
V2 = "/_synapse/admin/v2"


async def ok(resp: Any) -> Any:
    body = await resp.json()
    assert resp.status == 200, body
    return body


class StallAfter:
    """Wraps the delete handler: runs `steps` batches, then stalls until the runner is stopped."""

    def __init__(self, inner: Any, steps: int) -> None:
        self.inner = inner
        self.steps = steps
        self.reached = asyncio.Event()

    async def step(self, job: Job) -> Step:
        if self.steps == 0:
            self.reached.set()
            await asyncio.Event().wait()
        self.steps -= 1
        result: Step = await self.inner.step(job)
        return result


async def test_room_deletion_resumes_after_restart(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(room_deletion, "KICK_BATCH", 3)
    config = make_config(tmp_path)
    first = await aiohttp_client(create_app_from_config(config))
    admin = await register(first, admin=True)
    owner = await register(first)
    room = await ok(
        await first.post(
            f"{V3}/createRoom", json={"preset": "public_chat"}, headers=auth(owner["access_token"])
        )
    )
    room_id = room["room_id"]
    members = [owner["user_id"]]
    for _ in range(7):
        member = await register(first)
        await ok(await first.post(f"{V3}/join/{room_id}", json={}, headers=auth(member["access_token"])))
        members.append(member["user_id"])

    services = services_of(first)
    stall = StallAfter(services.jobs.handlers[room_deletion.DELETE_ROOM], steps=2)  # setup + one kick batch
    services.jobs.register(room_deletion.DELETE_ROOM, stall)
    started = await ok(
        await first.delete(f"{V2}/rooms/{room_id}", json={}, headers=auth(admin["access_token"]))
    )
    delete_id = started["delete_id"]
    await stall.reached.wait()
    status = await ok(
        await first.get(f"{V2}/rooms/delete_status/{delete_id}", headers=auth(admin["access_token"]))
    )
    assert status["status"] == "active" and len(status["shutdown_room"]["kicked_users"]) == 3, status
    await first.close()  # shutdown: the runner stops mid-job

    second = await aiohttp_client(create_app_from_config(config))
    services = services_of(second)
    assert services.jobs.running() == [delete_id]
    job = await services.jobs.wait(delete_id)
    assert job.status == "complete", job
    status = await ok(
        await second.get(f"{V2}/rooms/delete_status/{delete_id}", headers=auth(admin["access_token"]))
    )
    kicked = status["shutdown_room"]["kicked_users"]
    assert sorted(kicked) == sorted(members) and len(kicked) == len(set(kicked)), status
    assert status["shutdown_room"]["failed_to_kick_users"] == [], status

    # The room and its events are gone.
    assert await services.db.fetchval("SELECT COUNT(*) FROM events WHERE room_id = $1", room_id) == 0
    assert await services.rooms.get_room(room_id) is None
    resp = await second.get(f"/_synapse/admin/v1/rooms/{room_id}", headers=auth(admin["access_token"]))
    assert resp.status == 404
