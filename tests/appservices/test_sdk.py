"""The appservices/ SDK: its transaction receiver on its own, and its intent API against our
homeserver (started in-process with a registration the SDK generated)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from appservices import (
    AppServiceServer,
    ClientApi,
    MatrixRequestError,
    StateStore,
    TransactionStore,
    generate_registration,
    write_registration,
)
from homeserver.app import create_app_from_config

from ..api.helpers import auth, register
from ..conftest import make_config

SERVER = "test.local"


def _txn(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"events": events}


MEMBER = {
    "type": "m.room.member",
    "room_id": "!r:test.local",
    "state_key": "@bob:test.local",
    "sender": "@bob:test.local",
    "event_id": "$1",
    "content": {"membership": "join"},
}


async def test_transactions_checked_deduplicated_and_dispatched(aiohttp_client: Any, tmp_path: Path) -> None:
    store_path = str(tmp_path / "txns.db")
    server = AppServiceServer("hs-secret", TransactionStore(store_path))
    seen: list[str] = []

    @server.on("m.room.member")
    async def on_member(event: dict[str, Any]) -> None:
        seen.append(event["event_id"])

    client: TestClient = await aiohttp_client(server.make_app())
    url = "/_matrix/app/v1/transactions/t1"
    resp = await client.put(url, json=_txn([MEMBER]))
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNAUTHORIZED")
    resp = await client.put(url, json=_txn([MEMBER]), headers=auth("wrong"))
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    assert seen == []

    resp = await client.put(url, json=_txn([MEMBER]), headers=auth("hs-secret"))
    assert (resp.status, await resp.json()) == (200, {})
    assert seen == ["$1"]
    assert server.state.is_joined("!r:test.local", "@bob:test.local")
    # the homeserver retries the same transaction: answered, not dispatched again
    resp = await client.put(url, json=_txn([MEMBER]), params={"access_token": "hs-secret"})
    assert resp.status == 200
    assert seen == ["$1"]

    # a restarted appservice still knows t1 (SQLite), but takes t2
    restarted = AppServiceServer("hs-secret", TransactionStore(store_path))
    restarted.on("*")(on_member)
    client2: TestClient = await aiohttp_client(restarted.make_app())
    await client2.put(url, json=_txn([MEMBER]), headers=auth("hs-secret"))
    await client2.put(
        "/transactions/t2", json=_txn([{**MEMBER, "event_id": "$2"}]), headers=auth("hs-secret")
    )
    assert seen == ["$1", "$2"]


async def test_ephemeral_and_to_device_dispatched(aiohttp_client: Any) -> None:
    server = AppServiceServer("hs-secret")
    edus: list[str] = []
    messages: list[tuple[str, str]] = []

    @server.on_ephemeral
    async def on_edu(edu: dict[str, Any]) -> None:
        edus.append(edu["type"])

    @server.on_to_device
    async def on_message(message: dict[str, Any]) -> None:
        messages.append((message["to_user_id"], message["content"]["n"]))

    client: TestClient = await aiohttp_client(server.make_app())
    body = {
        "events": [],
        "de.sorunome.msc2409.ephemeral": [{"type": "m.typing", "room_id": "!r", "content": {"user_ids": []}}],
        "de.sorunome.msc2409.to_device": [
            {"type": "m.x", "sender": "@a:x", "content": {"n": 1}, "to_user_id": "@b:x", "to_device_id": "D"}
        ],
    }
    resp = await client.put("/_matrix/app/v1/transactions/e1", json=body, headers=auth("hs-secret"))
    assert resp.status == 200
    assert edus == ["m.typing"] and messages == [("@b:x", 1)]


async def test_ping_and_queries(aiohttp_client: Any) -> None:
    server = AppServiceServer("hs-secret")

    async def known(user_id: str) -> bool:
        return user_id == "@irc_bob:test.local"

    server.user_query = known
    client: TestClient = await aiohttp_client(server.make_app())
    resp = await client.post("/_matrix/app/v1/ping", json={"transaction_id": "x"}, headers=auth("hs-secret"))
    assert resp.status == 200
    resp = await client.get("/_matrix/app/v1/users/@irc_bob:test.local", headers=auth("hs-secret"))
    assert resp.status == 200
    resp = await client.get("/_matrix/app/v1/users/@irc_eve:test.local", headers=auth("hs-secret"))
    assert resp.status == 404
    resp = await client.get("/_matrix/app/v1/rooms/%23x:test.local", headers=auth("hs-secret"))
    assert resp.status == 404


def test_state_store_power_levels() -> None:
    state = StateStore()
    state.update(
        {
            "type": "m.room.power_levels",
            "room_id": "!r",
            "state_key": "",
            "content": {"users": {"@a:x": 100}, "events": {"m.room.name": 50}, "events_default": 0},
        }
    )
    assert state.power_level("!r", "@a:x") == 100
    assert state.can_send("!r", "@b:x", "m.room.message")
    assert not state.can_send("!r", "@b:x", "m.room.name", state=True)


async def test_intent_against_the_homeserver(aiohttp_client: Any, tmp_path: Path) -> None:
    registration = generate_registration(
        id="sdk",
        url=None,
        sender_localpart="sdkbot",
        user_regexes=(r"@sdk_.*:test\.local",),
        alias_regexes=(r"#sdk_.*:test\.local",),
    )
    reg_path = tmp_path / "sdk.yaml"
    write_registration(reg_path, registration)
    app = create_app_from_config(make_config(tmp_path, app_service_config_files=[str(reg_path)]))
    hs: TestClient = await aiohttp_client(app)
    alice = await register(hs)
    resp = await hs.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(alice["access_token"])
    )
    room_id = (await resp.json())["room_id"]

    api = ClientApi(str(hs.make_url("")), registration["as_token"])
    try:
        bot = api.intent(f"@sdkbot:{SERVER}")
        assert await bot.whoami() == f"@sdkbot:{SERVER}"
        ghost = api.intent(f"@sdk_bob:{SERVER}", StateStore())
        assert await ghost.join(room_id) == room_id  # registers @sdk_bob first
        assert ghost.state is not None and ghost.state.is_joined(room_id, ghost.user_id)
        await ghost.set_displayname("Bob (bridged)")
        first = await ghost.send_text(room_id, "hello", ts=1_500_000_000_000)
        edit = await ghost.edit(room_id, first, "hello!")
        redaction = await ghost.redact(room_id, edit, "typo")
        await ghost.typing(room_id, True)
        await ghost.mark_read(room_id, first)
        mxc = await ghost.upload_media(b"\x89PNG fake", "image/png", "a.png")
        assert mxc.startswith("mxc://")
        assert len({first, edit, redaction}) == 3
    finally:
        await api.close()

    headers = auth(alice["access_token"])
    resp = await hs.get(f"/_matrix/client/v3/rooms/{room_id}/event/{first}", headers=headers)
    event = await resp.json()
    assert (event["sender"], event["origin_server_ts"], event["content"]["body"]) == (
        f"@sdk_bob:{SERVER}",
        1_500_000_000_000,
        "hello",
    )
    resp = await hs.get(f"/_matrix/client/v3/profile/@sdk_bob:{SERVER}/displayname", headers=headers)
    assert (await resp.json())["displayname"] == "Bob (bridged)"
    resp = await hs.get(f"/_matrix/client/v3/rooms/{room_id}/event/{edit}", headers=headers)
    assert (await resp.json())["unsigned"]["redacted_because"]["event_id"] == redaction


def test_sdk_never_imports_the_homeserver() -> None:
    import ast

    package = Path(__file__).resolve().parents[2] / "appservices"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            assert not any(n.split(".")[0] == "homeserver" for n in names), path


async def test_sdk_receives_a_message_pushed_by_the_homeserver(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    """End to end: a user writes in a room where the SDK's bot is joined; the homeserver pushes
    the message to the SDK's transaction receiver, which dispatches it to the handler."""
    registration = generate_registration(
        id="sdk-push", url=None, sender_localpart="pushbot", user_regexes=(r"@push_.*:test\.local",)
    )
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()
    server = AppServiceServer(registration["hs_token"], TransactionStore(str(tmp_path / "txns.db")))

    @server.on("m.room.message")
    async def on_message(event: dict[str, Any]) -> None:
        received.append(event)
        arrived.set()

    sdk = await aiohttp_server(server.make_app())
    registration["url"] = str(sdk.make_url("")).rstrip("/")
    reg_path = tmp_path / "sdk-push.yaml"
    write_registration(reg_path, registration)
    hs: TestClient = await aiohttp_client(
        create_app_from_config(make_config(tmp_path, app_service_config_files=[str(reg_path)]))
    )
    alice = await register(hs)
    headers = auth(alice["access_token"])
    resp = await hs.post("/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=headers)
    room_id = (await resp.json())["room_id"]
    api = ClientApi(str(hs.make_url("")), registration["as_token"])
    try:
        assert await api.intent(f"@pushbot:{SERVER}").join(room_id) == room_id
    finally:
        await api.close()
    resp = await hs.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t1",
        json={"msgtype": "m.text", "body": "hi bot"},
        headers=headers,
    )
    event_id = (await resp.json())["event_id"]
    await asyncio.wait_for(arrived.wait(), 20)
    assert [(e["event_id"], e["sender"], e["content"]["body"]) for e in received] == [
        (event_id, alice["user_id"], "hi bot")
    ]
    assert server.state.is_joined(room_id, f"@pushbot:{SERVER}")  # learned from the pushed join


async def test_client_api_ping(aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path) -> None:
    """`ClientApi.ping`: the homeserver calls the SDK's ping endpoint; errors come back typed."""
    registration = generate_registration(id="sdk-ping", url=None, sender_localpart="pingbot")
    silent = generate_registration(id="sdk-silent", url=None, sender_localpart="silentbot")
    server = AppServiceServer(registration["hs_token"])
    sdk = await aiohttp_server(server.make_app())
    registration["url"] = str(sdk.make_url("")).rstrip("/")
    paths = []
    for reg in (registration, silent):
        paths.append(str(tmp_path / f"{reg['id']}.yaml"))
        write_registration(paths[-1], reg)
    hs: TestClient = await aiohttp_client(
        create_app_from_config(make_config(tmp_path, app_service_config_files=paths))
    )
    api = ClientApi(str(hs.make_url("")), registration["as_token"])
    other = ClientApi(str(hs.make_url("")), silent["as_token"])
    try:
        assert await api.ping("sdk-ping", "txn-1") >= 0
        with pytest.raises(MatrixRequestError) as no_url:
            await other.ping("sdk-silent")
        assert (no_url.value.status, no_url.value.errcode) == (400, "M_URL_NOT_SET")
        with pytest.raises(MatrixRequestError) as not_ours:
            await api.ping("sdk-silent")
        assert (not_ours.value.status, not_ours.value.errcode) == (403, "M_FORBIDDEN")
    finally:
        await api.close()
        await other.close()
