"""mautrix-python's `AppService` (a real bridge framework) against our homeserver: it registers
its bot and a ghost through the appservice API, and its bot joins a room when invited.

The homeserver does not push transactions yet (docs/appservices.md), so the invite is delivered
to mautrix's transaction endpoint by the test, exactly as a homeserver would send it; everything
mautrix does in reaction goes to our server over the client-server API.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from appservices import generate_registration, write_registration
from homeserver.app import create_app_from_config

from ..api.helpers import auth, register
from ..conftest import make_config

try:
    from mautrix.appservice import AppService
    from mautrix.types import Event, EventType, Membership, UserID
except ImportError:  # a dev dependency (pyproject); CI must have it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("mautrix is not installed (pip install -e '.[dev]')", allow_module_level=True)

SERVER = "test.local"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_mautrix_appservice_registers_and_joins_on_invite(aiohttp_client: Any, tmp_path: Path) -> None:
    port = _free_port()
    registration = generate_registration(
        id="mautrix-test",
        url=f"http://127.0.0.1:{port}",
        sender_localpart="mxbot",
        user_regexes=(r"@mx_.*:test\.local",),
    )
    reg_path = tmp_path / "mautrix.yaml"
    write_registration(reg_path, registration)
    hs: TestClient = await aiohttp_client(
        create_app_from_config(make_config(tmp_path, app_service_config_files=[str(reg_path)]))
    )
    alice = await register(hs)
    headers = auth(alice["access_token"])
    resp = await hs.post("/_matrix/client/v3/createRoom", json={}, headers=headers)
    room_id = (await resp.json())["room_id"]

    appservice = AppService(
        server=str(hs.make_url("")).rstrip("/"),
        domain=SERVER,
        as_token=registration["as_token"],
        hs_token=registration["hs_token"],
        bot_localpart="mxbot",
        id="mautrix-test",
    )
    joined = asyncio.Event()

    async def on_event(event: Event) -> None:
        if (
            event.type == EventType.ROOM_MEMBER
            and event.state_key == appservice.bot_mxid
            and event.content.membership == Membership.INVITE
        ):
            await appservice.intent.join_room(event.room_id)
            joined.set()

    appservice.matrix_event_handler(on_event)
    await appservice.start("127.0.0.1", port)
    try:
        await appservice.intent.ensure_registered()
        ghost = appservice.intent.user(UserID(f"@mx_bob:{SERVER}"))
        await ghost.ensure_registered()
        await ghost.set_displayname("Bob via mautrix")

        resp = await hs.post(
            f"/_matrix/client/v3/rooms/{room_id}/invite",
            json={"user_id": appservice.bot_mxid},
            headers=headers,
        )
        assert resp.status == 200, await resp.text()
        state = await (await hs.get(f"/_matrix/client/v3/rooms/{room_id}/state", headers=headers)).json()
        invite = next(
            e for e in state if e["type"] == "m.room.member" and e["state_key"] == appservice.bot_mxid
        )
        # deliver it as the homeserver's transaction push would
        async with aiohttp.ClientSession() as session:
            async with session.put(
                f"http://127.0.0.1:{port}/_matrix/app/v1/transactions/t1",
                json={"events": [invite]},
                headers={"Authorization": f"Bearer {registration['hs_token']}"},
            ) as push:
                assert push.status == 200
        await asyncio.wait_for(joined.wait(), 30)  # mautrix dispatches handlers in tasks

        await appservice.intent.send_text(room_id, "hello from mautrix")
    finally:
        await appservice.stop()

    members = await (
        await hs.get(f"/_matrix/client/v3/rooms/{room_id}/joined_members", headers=headers)
    ).json()
    assert appservice.bot_mxid in members["joined"]
    resp = await hs.get(f"/_matrix/client/v3/profile/@mx_bob:{SERVER}/displayname", headers=headers)
    assert (await resp.json())["displayname"] == "Bob via mautrix"
    messages = await (
        await hs.get(f"/_matrix/client/v3/rooms/{room_id}/messages", params={"dir": "b"}, headers=headers)
    ).json()
    assert any(e.get("content", {}).get("body") == "hello from mautrix" for e in messages["chunk"])
