"""The appservices/ SDK against a homeserver process, black box: the same tests for our server
and for Synapse (issue #14's acceptance), including delivery after the homeserver restarts with
transactions pending.

A target is a base URL, a registration shared secret, the appservice registration the server was
started with (generated here by the SDK) and a way to restart the server:

* `ours` (always): `python -m homeserver run` through the compat suite's launcher (SQLite);
* `synapse` (opt-in, `MATRIX_TEST_SYNAPSE=1`): Synapse from PyPI through `bench/synapse_ref.py`;
* `external` (`AS_SDK_BASE_URL`, `AS_SDK_SHARED_SECRET`, `AS_SDK_REGISTRATION` = the file the server
  was started with; optional `AS_SDK_RESTART_CMD`, a shell command that restarts it and returns
  once it answers; without it the restart test skips).

The appservice (the SDK's `AppServiceServer`) listens on the registration's `url` in the test's
event loop; the ordinary user talks to the server with the compat suite's stdlib client (in a
thread, so that the loop keeps serving the homeserver's transactions).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from appservices import (
    AppServiceServer,
    ClientApi,
    StateStore,
    TransactionStore,
    generate_registration,
    load_registration,
    write_registration,
)
from synapse_compat_tests.client import MatrixClient, Response, q, register_user

V3 = "/_matrix/client/v3"
PREFIX = "sdkbb_"
WAIT = 60.0  # Synapse's recoverer and a loaded CI machine: generous, only hit on failure


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Target:
    name: str
    base_url: str
    shared_secret: str
    registration: dict[str, Any]
    restart: Callable[[], None] | None
    txn_db: str
    server_name: str = ""

    @property
    def port(self) -> int:
        return int(str(self.registration["url"]).rsplit(":", 1)[1])

    def user(self) -> Person:
        user_id, token, _device = register_user(
            MatrixClient(self.base_url), self.shared_secret, f"u{secrets.token_hex(5)}", "pw-123456"
        )
        self.server_name = user_id.split(":", 1)[1]
        return Person(user_id, MatrixClient(self.base_url, token))


@dataclass
class Person:
    user_id: str
    client: MatrixClient


def _registration(path: Path) -> dict[str, Any]:
    reg = generate_registration(
        id="sdk-blackbox",
        url=f"http://127.0.0.1:{_free_port()}",
        sender_localpart=f"{PREFIX}bot",
        user_regexes=(rf"@{PREFIX}.*",),
        receive_ephemeral=True,
    )
    write_registration(path, reg)
    return reg


def _ours(tmp: Path) -> Iterator[Target]:
    from synapse_compat_tests.launcher import launch, restart

    reg = _registration(tmp / "sdk.yaml")
    server = launch("sqlite", tmp / "hs", overrides={"app_service_config_files": [str(tmp / "sdk.yaml")]})
    try:
        yield Target(
            "ours", server.base_url, server.shared_secret, reg, lambda: restart(server), str(tmp / "t.db")
        )
    finally:
        server.stop()


def _synapse(tmp: Path) -> Iterator[Target]:
    if os.environ.get("MATRIX_TEST_SYNAPSE") != "1":
        pytest.skip("against Synapse only with MATRIX_TEST_SYNAPSE=1 (see docs/appservices.md)")
    from bench import synapse_ref

    reg = _registration(tmp / "sdk.yaml")
    data_dir = tmp / "synapse"
    inst = synapse_ref.start(
        port=_free_port(),
        data_dir=data_dir,
        bcrypt_rounds=4,
        extra_config={"app_service_config_files": [str(tmp / "sdk.yaml")]},
    )
    try:
        yield Target(
            "synapse",
            inst.base_url,
            inst.shared_secret,
            reg,
            lambda: _ignore(synapse_ref.restart(data_dir)),
            str(tmp / "t.db"),
        )
    finally:
        synapse_ref.stop(data_dir)


def _ignore(_: Any) -> None:
    return None


def _external(tmp: Path) -> Iterator[Target]:
    command = os.environ.get("AS_SDK_RESTART_CMD")

    def restart() -> None:
        assert command is not None
        subprocess.run(command, shell=True, check=True)

    yield Target(
        "external",
        os.environ["AS_SDK_BASE_URL"].rstrip("/"),
        os.environ["AS_SDK_SHARED_SECRET"],
        load_registration(os.environ["AS_SDK_REGISTRATION"]),
        restart if command else None,
        str(tmp / "t.db"),
    )


TARGETS = ["external"] if os.environ.get("AS_SDK_BASE_URL") else ["ours", "synapse"]


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    factory = {"ours": _ours, "synapse": _synapse, "external": _external}[request.param]
    yield from factory(tmp_path_factory.mktemp(f"sdk-{request.param}"))


# --------------------------------------------------------------------------- the appservice


@dataclass
class Appservice:
    """The SDK's receiver on the registration's port, recording what its handlers were given."""

    target: Target
    server: AppServiceServer
    api: ClientApi
    events: list[dict[str, Any]] = field(default_factory=list)
    ephemeral: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def bot_id(self) -> str:
        return f"@{self.target.registration['sender_localpart']}:{self.target.server_name}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.server.make_app())
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.target.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def messages(self, room_id: str) -> list[str]:
        return [
            e["content"].get("body", "")
            for e in self.events
            if e.get("room_id") == room_id and e.get("type") == "m.room.message"
        ]

    async def until(self, check: Callable[[], bool], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"{self.target.name}: timed out waiting for {what}; got {self.events}")
            await asyncio.sleep(0.1)


@pytest.fixture
async def appservice(target: Target) -> AsyncIterator[Appservice]:
    reg = target.registration
    server = AppServiceServer(reg["hs_token"], TransactionStore(target.txn_db), StateStore())
    api = ClientApi(target.base_url, reg["as_token"])
    if not target.server_name:
        await asyncio.to_thread(target.user)
    service = Appservice(target, server, api)
    server.on("*")(_record(service.events))
    server.on_ephemeral(_record(service.ephemeral))
    try:
        yield service
    finally:
        await service.stop()
        await api.close()
        server.txns.close()


def _record(into: list[dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    async def handler(event: dict[str, Any]) -> None:
        into.append(event)

    return handler


async def call(who: Person, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    args = (method, path) if body is None else (method, path, body)
    resp: Response = await asyncio.to_thread(who.client.request, *args)
    assert resp.status == expect, resp.describe()
    return resp.body


async def say(client: Person, room_id: str, text: str) -> str:
    path = f"{V3}/rooms/{q(room_id)}/send/m.room.message/{secrets.token_hex(6)}"
    return str((await call(client, "PUT", path, {"msgtype": "m.text", "body": text}))["event_id"])


# --------------------------------------------------------------------------- tests


async def test_intent_api_acts_as_namespace_users(target: Target, appservice: Appservice) -> None:
    alice = await asyncio.to_thread(target.user)
    room_id = (await call(alice, "POST", f"{V3}/createRoom", {"preset": "public_chat"}))["room_id"]
    ghost = appservice.api.intent(f"@{PREFIX}{secrets.token_hex(4)}:{target.server_name}", StateStore())
    assert await ghost.join(room_id) == room_id  # registered through the appservice API first
    assert await ghost.whoami() == ghost.user_id
    await ghost.set_displayname("Ghost (bridged)")
    first = await ghost.send_text(room_id, "hello", ts=1_500_000_000_000)
    edit = await ghost.edit(room_id, first, "hello!")
    redaction = await ghost.redact(room_id, edit, "typo")
    await ghost.typing(room_id, True)
    await ghost.mark_read(room_id, first)
    assert (await ghost.upload_media(b"\x89PNG fake", "image/png", "a.png")).startswith("mxc://")

    event = await call(alice, "GET", f"{V3}/rooms/{q(room_id)}/event/{q(first)}")
    assert (event["sender"], event["origin_server_ts"], event["content"]["body"]) == (
        ghost.user_id,
        1_500_000_000_000,
        "hello",
    )
    edited = await call(alice, "GET", f"{V3}/rooms/{q(room_id)}/event/{q(edit)}")
    assert edited["unsigned"]["redacted_because"]["event_id"] == redaction
    profile = await call(alice, "GET", f"{V3}/profile/{q(ghost.user_id)}/displayname")
    assert profile["displayname"] == "Ghost (bridged)"


async def test_bot_joins_on_invite_echoes_and_gets_typing(target: Target, appservice: Appservice) -> None:
    bot = appservice.api.intent(appservice.bot_id, appservice.server.state)

    @appservice.server.on("m.room.member")
    async def on_invite(event: dict[str, Any]) -> None:
        if event.get("state_key") == bot.user_id and event["content"].get("membership") == "invite":
            await bot.join(event["room_id"])

    @appservice.server.on("m.room.message")
    async def on_message(event: dict[str, Any]) -> None:
        body = event["content"].get("body", "")
        if event["sender"] != bot.user_id and body.startswith("!echo "):
            await bot.send_text(event["room_id"], body[len("!echo ") :], notice=True)

    await appservice.start()
    assert await appservice.api.ping("sdk-blackbox") >= 0  # and retries anything backing off
    alice = await asyncio.to_thread(target.user)
    room_id = (await call(alice, "POST", f"{V3}/createRoom", {"invite": [bot.user_id]}))["room_id"]
    await appservice.until(lambda: appservice.server.state.is_joined(room_id, bot.user_id), "the bot's join")

    await say(alice, room_id, "!echo 안녕")
    await appservice.until(lambda: "안녕" in appservice.messages(room_id), "the echo")
    path = f"{V3}/rooms/{q(room_id)}/typing/{q(alice.user_id)}"
    await call(alice, "PUT", path, {"typing": True, "timeout": 30_000})
    await appservice.until(
        lambda: any(
            e.get("type") == "m.typing"
            and e.get("room_id") == room_id
            and alice.user_id in e.get("content", {}).get("user_ids", [])
            for e in appservice.ephemeral
        ),
        "the typing notification",
    )
    history = await call(alice, "GET", f"{V3}/rooms/{q(room_id)}/messages?dir=b&limit=10")
    echo = next(e for e in history["chunk"] if e["type"] == "m.room.message" and e["sender"] == bot.user_id)
    assert echo["content"] == {"msgtype": "m.notice", "body": "안녕"}


async def test_delivery_after_restart_with_transactions_pending(
    target: Target, appservice: Appservice
) -> None:
    """The appservice is down; the homeserver fails a transaction, more events queue up, the
    homeserver restarts, one more event; then the appservice comes up: every event once, in order."""
    if target.restart is None:
        pytest.skip("no way to restart this server (AS_SDK_RESTART_CMD)")
    alice = await asyncio.to_thread(target.user)
    room_id = (await call(alice, "POST", f"{V3}/createRoom", {"preset": "public_chat"}))["room_id"]
    bot = appservice.api.intent(appservice.bot_id)
    await bot.join(room_id)

    # A failing appservice first, so that the homeserver has tried and holds a transaction.
    attempts: list[Any] = []

    async def refuse(request: web.Request) -> web.Response:
        attempts.append(await request.json())
        return web.json_response({"errcode": "M_UNKNOWN", "error": "down"}, status=503)

    async def pong(_request: web.Request) -> web.Response:
        return web.json_response({})

    failing = web.Application()
    failing.router.add_put("/_matrix/app/v1/transactions/{txnId}", refuse)
    failing.router.add_post("/_matrix/app/v1/ping", pong)
    runner = web.AppRunner(failing)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", target.port).start()
    sent = ["before restart 1"]
    await say(alice, room_id, sent[0])
    # A successful ping makes a backing-off homeserver retry now (both do), not in up to minutes.
    await appservice.api.ping("sdk-blackbox")

    def tried() -> bool:
        return any(e.get("room_id") == room_id for body in attempts for e in body.get("events", []))

    try:
        await appservice.until(tried, "a first (refused) transaction")
    finally:
        await runner.cleanup()  # the port is closed from now on
    for i in (2, 3, 4):
        sent.append(f"before restart {i}")
        await say(alice, room_id, sent[-1])

    await asyncio.to_thread(target.restart)
    sent.append("after restart")
    await say(alice, room_id, sent[-1])

    await appservice.start()
    await appservice.api.ping("sdk-blackbox")  # retry now rather than after the backoff
    await appservice.until(lambda: "after restart" in appservice.messages(room_id), "the last message")
    # A duplicate of the pending ones would come before a message sent now (delivery is in order).
    sent.append("sentinel")
    await say(alice, room_id, sent[-1])
    await appservice.until(lambda: "sentinel" in appservice.messages(room_id), "the sentinel")
    assert appservice.messages(room_id) == sent
    ids = [e["event_id"] for e in appservice.events if e.get("room_id") == room_id]
    assert len(ids) == len(set(ids))
