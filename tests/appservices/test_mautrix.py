"""mautrix-python's `AppService` (a real bridge framework) against our homeserver: it registers
its bot and a ghost through the appservice API, receives the invite in a transaction the homeserver
pushes, and its bot joins; then it receives a message sent by a user in the room.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

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
    received: list[str] = []
    got_message = asyncio.Event()

    async def on_event(event: Event) -> None:
        if event.type == EventType.ROOM_MESSAGE:
            received.append(str(event.content.body))
            if event.content.body == "hello bridge":
                got_message.set()
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
        # the homeserver pushes the invite to mautrix's transaction endpoint
        await asyncio.wait_for(joined.wait(), 30)  # mautrix dispatches handlers in tasks

        await appservice.intent.send_text(room_id, "hello from mautrix")
        resp = await hs.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/m1",
            json={"msgtype": "m.text", "body": "hello bridge"},
            headers=headers,
        )
        assert resp.status == 200
        await asyncio.wait_for(got_message.wait(), 30)
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
    assert "hello bridge" in received
