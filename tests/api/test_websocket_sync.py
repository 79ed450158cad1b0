"""Sync over a WebSocket (docs/websocket.md), driven with aiohttp's WebSocket client and the
reference client (appservices/websocket_sync.py): live delivery, the three ways to authenticate,
close codes, requests over the socket (idempotent sends, typing, receipts, read markers, any
endpoint, the same errors and rate limits), logout elsewhere, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from appservices.intent import MatrixRequestError
from appservices.websocket_sync import (
    STABLE_PATH,
    SUBPROTOCOL,
    TOKEN_SUBPROTOCOL_PREFIX,
    UNSTABLE_PATH,
    ConnectionClosed,
    WebSocketSync,
)
from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.http.access_log import access_log_kwargs
from homeserver.sync.live import LiveSettings
from synapse_compat_tests.spec_schema import assert_matches_spec

from ..conftest import make_config, services_of
from .ephemeral_helpers import NO_PRESENCE, V3, User, ephemeral, q, timeline_ids

QUIET = {"presence": {"types": []}, "account_data": {"types": []}}


@pytest.fixture
async def hs(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(create_app_from_config(make_config(tmp_path, **NO_PRESENCE)))


@pytest.fixture
async def any_hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


def base(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


def ws_client(client: Any, user: User, **kw: Any) -> WebSocketSync:
    kw.setdefault("filter", QUIET)
    return WebSocketSync(base(client), user.token, session=client.session, **kw)


async def room_of(client: Any) -> tuple[User, User, str]:
    alice = await User.new(client)
    bob = await User.new(client)
    room_id = await alice.create_room()
    await bob.join(room_id)
    return alice, bob, room_id


async def until(conn: WebSocketSync, predicate: Callable[[dict[str, Any]], Any], rounds: int = 20) -> Any:
    """Sync frames until one satisfies `predicate` (each one must be a valid /sync response)."""
    for _ in range(rounds):
        body = await conn.next_sync(10)
        assert_matches_spec("sync.yaml", "/sync", "GET", 200, body)
        found = predicate(body)
        if found:
            return found
    raise AssertionError("no sync frame satisfied the condition")


def bodies(body: dict[str, Any], room_id: str) -> list[str]:
    room = body["rooms"]["join"].get(room_id) or {}
    return [e["content"].get("body") for e in room.get("timeline", {}).get("events", [])]


def without_age(value: Any) -> Any:
    """`unsigned.age` depends on when the response was built."""
    if isinstance(value, dict):
        return {k: without_age(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [without_age(v) for v in value]
    return value


async def closed(conn: WebSocketSync) -> ConnectionClosed:
    for _ in range(50):
        try:
            await conn.next_sync(5)
        except ConnectionClosed as exc:
            return exc
    raise AssertionError("the socket stayed open")


# -- delivery --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [UNSTABLE_PATH, STABLE_PATH])
async def test_message_delivered_live(any_hs: Any, path: str) -> None:
    alice, bob, room_id = await room_of(any_hs)
    async with ws_client(any_hs, bob, path=path) as conn:
        assert conn.ready is not None and conn.ready["user_id"] == bob.user_id
        assert conn.ready["device_id"] == bob.device_id
        first = await conn.next_sync(10)
        assert room_id in first["rooms"]["join"]  # an initial sync without `since`
        event_id = await alice.send(room_id, "live one")
        found = await until(conn, lambda b: event_id in timeline_ids(b, room_id))
        assert found
        # Pushed without asking, each frame with its own next_batch: the next one only has news.
        event_id = await alice.send(room_id, "live two")
        body = await conn.next_sync(10)
        assert timeline_ids(body, room_id) == [event_id]
        assert body["next_batch"] == conn.next_batch


async def test_resume_from_token_and_same_response_as_sync(hs: Any) -> None:
    alice, bob, room_id = await room_of(hs)
    since = (await bob.sync())["next_batch"]
    sent = [await alice.send(room_id, f"m{i}") for i in range(3)]
    flt = json.dumps({"room": {"timeline": {"limit": 2}}, **QUIET})
    # The first frame equals what GET /sync returns for the same token and filter.
    http_body = await bob.sync(since, filter=flt, set_presence=None)
    async with ws_client(hs, bob, since=since, filter=flt) as conn:
        body = await conn.next_sync(10)
    assert without_age(body["rooms"]) == without_age(http_body["rooms"])
    assert timeline_ids(body, room_id) == sent[1:]
    assert body["rooms"]["join"][room_id]["timeline"]["limited"] is True


async def test_plain_sync_still_long_polls(hs: Any) -> None:
    alice, bob, room_id = await room_of(hs)
    since = (await bob.sync())["next_batch"]
    waiter = asyncio.ensure_future(bob.sync(since, timeout_ms=10_000))
    await asyncio.sleep(0.05)
    event_id = await alice.send(room_id)
    assert event_id in timeline_ids(await waiter, room_id)
    # The unstable path serves upgrades only.
    resp = await hs.get(UNSTABLE_PATH, headers=bob.headers)
    assert resp.status == 400
    assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


# -- authentication and close codes ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["header", "frame", "subprotocol"])
async def test_auth_modes(hs: Any, mode: str) -> None:
    alice, bob, room_id = await room_of(hs)
    async with ws_client(hs, bob, auth=mode) as conn:  # type: ignore[arg-type]
        assert conn.ready is not None and conn.ready["user_id"] == bob.user_id
        assert conn._ws is not None
        # The server picks the plain subprotocol, never echoes the token.
        assert conn._ws.protocol == SUBPROTOCOL
        await conn.next_sync(10)
        event_id = await alice.send(room_id)
        await until(conn, lambda b: event_id in timeline_ids(b, room_id))


async def test_access_token_query_parameter(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    async with hs.session.ws_connect(f"{base(hs)}{UNSTABLE_PATH}?access_token={bob.token}") as ws:
        ready = json.loads((await ws.receive(timeout=10)).data)
        assert ready["type"] == "ready" and ready["user_id"] == bob.user_id


async def test_permessage_deflate_is_declined(hs: Any) -> None:
    """Browsers offer compression; a zlib context kept per socket would cost ~260 KiB each."""
    _, bob, _ = await room_of(hs)
    async with hs.session.ws_connect(f"{base(hs)}{UNSTABLE_PATH}", headers=bob.headers, compress=15) as ws:
        assert "Sec-WebSocket-Extensions" not in ws._response.headers
        assert ws.compress == 0
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "ready"
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "sync"


async def _refused(
    hs: Any,
    path: str,
    headers: dict[str, str] | None = None,
    first: str | None = None,
    protocols: tuple[str, ...] = (),
) -> tuple[int | None, str, dict[str, Any] | None]:
    async with hs.session.ws_connect(f"{base(hs)}{path}", headers=headers or {}, protocols=protocols) as ws:
        if first is not None:
            await ws.send_str(first)
        error = None
        while True:
            msg = await ws.receive(timeout=10)
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                assert frame["type"] == "error", frame
                error = frame["error"]
                continue
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            return ws.close_code, str(msg.extra), error


async def test_bad_auth_close_codes(hs: Any) -> None:
    services_of(hs).live_sync.settings = LiveSettings(auth_timeout_s=0.3)
    code, reason, error = await _refused(hs, UNSTABLE_PATH, {"Authorization": "Bearer nope"})
    assert (code, reason) == (4401, "M_UNKNOWN_TOKEN")
    assert error is not None and error["errcode"] == "M_UNKNOWN_TOKEN"
    code, reason, _ = await _refused(hs, STABLE_PATH, {"Authorization": "Basic abc"})
    assert (code, reason) == (4401, "M_MISSING_TOKEN")
    code, reason, _ = await _refused(
        hs, UNSTABLE_PATH, protocols=(SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + "bad")
    )
    assert (code, reason) == (4401, "M_UNKNOWN_TOKEN")
    # No token in the upgrade: the first frame must be an auth frame, in time.
    code, reason, _ = await _refused(hs, UNSTABLE_PATH, first='{"type": "ping"}')
    assert (code, reason) == (4401, "M_MISSING_TOKEN")
    code, reason, _ = await _refused(hs, UNSTABLE_PATH, first='{"type": "auth", "access_token": "x"}')
    assert (code, reason) == (4401, "M_UNKNOWN_TOKEN")
    code, reason, _ = await _refused(hs, UNSTABLE_PATH, first="not json")
    assert (code, reason) == (4401, "M_MISSING_TOKEN")
    async with hs.session.ws_connect(f"{base(hs)}{UNSTABLE_PATH}") as ws:
        await ws.send_bytes(b"binary")
        assert json.loads((await ws.receive(timeout=10)).data)["error"]["errcode"] == "M_MISSING_TOKEN"
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4401
    code, reason, _ = await _refused(hs, UNSTABLE_PATH)
    assert (code, reason) == (4408, "M_MISSING_TOKEN")
    assert services_of(hs).live_sync.count == 0


async def test_bad_parameters_close_codes(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    for query in [
        "since=garbage",
        "set_presence=dancing",
        "full_state=maybe",
        "timeout=-5",
        "filter=999999",
        "filter=%7Bnope",
        "filter=ab%00cd",
    ]:
        # The same refusal as GET /sync with these parameters, as a close code.
        resp = await hs.get(f"{STABLE_PATH}?{query}", headers=bob.headers)
        assert resp.status == 400, query
        errcode = (await resp.json())["errcode"]
        code, reason, error = await _refused(hs, f"{UNSTABLE_PATH}?{query}", bob.headers)
        assert code == 4400, (query, code, reason)
        assert error is not None
        assert (reason, error["errcode"]) == (errcode, errcode), query


async def test_not_a_websocket_handshake(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    # Upgrade asked for, but no Sec-WebSocket-Key: a Matrix error, not a crash.
    resp = await hs.get(
        UNSTABLE_PATH, headers={**bob.headers, "Upgrade": "websocket", "Connection": "Upgrade"}
    )
    assert resp.status == 400
    assert "errcode" in await resp.json()


async def test_logout_elsewhere_closes_the_socket(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    conn = ws_client(hs, bob)
    await conn.connect()
    await conn.next_sync(10)
    # The same token logged out through HTTP (another tab): closed at once, not at the next request.
    await bob.post(f"{V3}/logout", {})
    exc = await closed(conn)
    assert exc.code == 4410
    assert exc.reason == "M_UNKNOWN_TOKEN"
    assert exc.error is not None and exc.error["errcode"] == "M_UNKNOWN_TOKEN"
    await conn.close()
    assert services_of(hs).live_sync.count == 0


async def test_device_deleted_and_deactivation_close_sockets(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    login = await hs.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": bob.user_id},
            "password": "pass-word-1",
        },
    )
    second = User(hs, await login.json())
    conn1 = ws_client(hs, bob)
    conn2 = ws_client(hs, second)
    await conn1.connect()
    await conn2.connect()
    # Deleting the second device (from the first) closes only the second socket.
    auth_body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": bob.user_id},
        "password": "pass-word-1",
    }
    await bob.post(f"{V3}/delete_devices", {"devices": [second.device_id], "auth": auth_body})
    assert (await closed(conn2)).code == 4410
    await conn1.ping()  # still open
    await bob.post(f"{V3}/account/deactivate", {"auth": auth_body})
    assert (await closed(conn1)).code == 4410
    await conn1.close()
    await conn2.close()


async def test_expired_refreshable_token_closes_with_soft_logout(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, **NO_PRESENCE, refreshable_access_token_lifetime=1500)
    hs = await aiohttp_client(create_app_from_config(config))
    _, bob, _ = await room_of(hs)
    login = await hs.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": bob.user_id},
            "password": "pass-word-1",
            "refresh_token": True,
        },
    )
    body = await login.json()
    assert body["expires_in_ms"] == 1500
    conn = ws_client(hs, User(hs, body))
    await conn.connect()
    exc = await closed(conn)
    assert (exc.code, exc.reason) == (4410, "M_UNKNOWN_TOKEN")
    assert exc.error is not None and exc.error["soft_logout"] is True
    await conn.close()


async def test_heartbeat_closes_a_dead_peer(hs: Any) -> None:
    services_of(hs).live_sync.settings = LiveSettings(heartbeat_s=0.2)
    _, bob, _ = await room_of(hs)
    # A client that never answers pings (autoping off, never reads): the server gives up on it.
    async with hs.session.ws_connect(f"{base(hs)}{UNSTABLE_PATH}", headers=bob.headers, autoping=False) as ws:
        for _ in range(200):
            if services_of(hs).live_sync.count == 1:
                break
            await asyncio.sleep(0.01)
        for _ in range(300):
            if services_of(hs).live_sync.count == 0:
                break
            await asyncio.sleep(0.01)
        assert services_of(hs).live_sync.count == 0
        kinds = set()
        while True:
            msg = await ws.receive(timeout=5)
            kinds.add(msg.type)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        assert aiohttp.WSMsgType.PING in kinds


async def test_app_level_ping_for_browsers(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    async with ws_client(hs, bob) as conn:
        assert conn._ws is not None
        answer = await conn._call({"type": "ping"})
        assert answer["type"] == "pong"


async def test_shutdown_closes_with_going_away(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    conn = ws_client(hs, bob)
    await conn.connect()
    await conn.next_sync(10)
    await hs.server.app.shutdown()  # the on_shutdown signal the runner sends on SIGTERM
    exc = await closed(conn)
    assert (exc.code, exc.reason) == (1001, "server shutting down")
    await conn.close()


async def test_notifier_close_ends_the_push_loop(hs: Any) -> None:
    _, bob, _ = await room_of(hs)
    conn = ws_client(hs, bob)
    await conn.connect()
    await conn.next_sync(10)
    services_of(hs).notifier.close()  # what the CLI does first on shutdown
    exc = await closed(conn)
    assert exc.code == 1001
    await conn.close()


# -- requests over the socket ----------------------------------------------------------------------


async def test_send_over_socket_is_idempotent(any_hs: Any) -> None:
    alice, bob, room_id = await room_of(any_hs)
    async with ws_client(any_hs, bob) as conn:
        await conn.next_sync(10)
        content = {"msgtype": "m.text", "body": "once"}
        first = await conn.send_message(room_id, content, txn_id="txn-1")
        again = await conn.send_message(room_id, content, txn_id="txn-1")
        assert first == again
        other = await conn.send_message(room_id, content, txn_id="txn-2")
        assert other != first
        # The same transaction id through HTTP from the same device is the same send too.
        http = await bob.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/txn-1", content)
        assert http["event_id"] == first
        seen: list[str] = []

        def both(body: dict[str, Any]) -> bool:
            seen.extend(timeline_ids(body, room_id))
            return other in seen

        await until(conn, both)
        assert seen.count(first) == 1 and seen.count(other) == 1
        # Our own echo carries the transaction id, as on /sync.
    messages = await alice.get(f"{V3}/rooms/{q(room_id)}/messages", dir="b", limit=10)
    assert [e["event_id"] for e in messages["chunk"] if e["type"] == "m.room.message"] == [other, first]


async def test_typing_both_ways(hs: Any) -> None:
    alice, bob, room_id = await room_of(hs)
    async with ws_client(hs, bob) as bob_ws, ws_client(hs, alice) as alice_ws:
        await bob_ws.next_sync(10)
        await alice_ws.next_sync(10)
        await bob_ws.typing(room_id, True, 30_000)  # client -> server

        def typing_of(body: dict[str, Any]) -> list[str] | None:
            events = ephemeral(body, room_id, "m.typing")
            return events[0]["content"]["user_ids"] if events else None

        assert await until(alice_ws, typing_of) == [bob.user_id]  # server -> client
        await alice.typing(room_id, True, 30_000)  # over HTTP
        both = sorted([alice.user_id, bob.user_id])
        assert await until(bob_ws, lambda b: sorted(typing_of(b) or []) == both)
        await bob_ws.typing(room_id, False)
        assert await until(alice_ws, lambda b: typing_of(b) == [alice.user_id])
        # Typing for someone else is refused exactly as over HTTP.
        answer = await bob_ws._call(
            {"type": "typing", "room_id": room_id, "user_id": alice.user_id, "typing": True, "timeout": 1000}
        )
        assert answer["status"] == 403 and answer["error"]["errcode"] == "M_FORBIDDEN"


async def test_receipts_and_read_markers_both_ways(hs: Any) -> None:
    alice, bob, room_id = await room_of(hs)
    event_id = await alice.send(room_id, "read me")
    async with ws_client(hs, bob) as bob_ws, ws_client(hs, alice) as alice_ws:
        await bob_ws.next_sync(10)
        await alice_ws.next_sync(10)
        await bob_ws.receipt(room_id, event_id)

        def read_by(body: dict[str, Any]) -> set[str]:
            users: set[str] = set()
            for ev in ephemeral(body, room_id, "m.receipt"):
                users |= set(ev["content"].get(event_id, {}).get("m.read", {}))
            return users

        assert await until(alice_ws, lambda b: bob.user_id in read_by(b))
        # alice reads through HTTP; bob's socket shows it.
        await alice.receipt(room_id, event_id)
        assert await until(bob_ws, lambda b: alice.user_id in read_by(b))
        # Read markers over the socket: the fully-read marker lands in room account data.
        await bob_ws.read_markers(room_id, fully_read=event_id)
        marker = await bob.get(f"{V3}/user/{q(bob.user_id)}/rooms/{q(room_id)}/account_data/m.fully_read")
        assert marker == {"event_id": event_id}
        with pytest.raises(MatrixRequestError) as err:
            await bob_ws.receipt(room_id, "$nope:test.local", receipt_type="m.bogus")
        assert err.value.status == 400


async def test_any_request_over_the_socket(hs: Any) -> None:
    _alice, bob, room_id = await room_of(hs)
    async with ws_client(hs, bob) as conn:
        who = await conn.request("GET", f"{V3}/account/whoami")
        assert who["user_id"] == bob.user_id and who["device_id"] == bob.device_id
        await conn.request("PUT", f"{V3}/profile/{q(bob.user_id)}/displayname", {"displayname": "Bobby"})
        assert (await bob.get(f"{V3}/profile/{q(bob.user_id)}/displayname")) == {"displayname": "Bobby"}
        page = await conn.request("GET", f"{V3}/rooms/{q(room_id)}/messages?dir=b&limit=2")
        assert len(page["chunk"]) == 2
        # Errors are the endpoint's own: unknown endpoint, forbidden, bad JSON body, bad params.
        cases = [
            ({"method": "GET", "path": f"{V3}/no/such/endpoint"}, 404, "M_UNRECOGNIZED"),
            ({"method": "POST", "path": f"{V3}/account/whoami"}, 405, "M_UNRECOGNIZED"),
            ({"method": "GET", "path": f"{V3}/rooms/{q('!other:test.local')}/state"}, 403, "M_FORBIDDEN"),
            (
                {
                    "method": "PUT",
                    "path": f"{V3}/profile/{q(bob.user_id)}/displayname",
                    "body": {"displayname": 5},
                },
                400,
                "M_BAD_JSON",
            ),
            (
                {"method": "GET", "path": f"{V3}/rooms/{q(room_id)}/messages?dir=b&limit=abc"},
                400,
                "M_INVALID_PARAM",
            ),
            ({"method": "PATCH", "path": f"{V3}/account/whoami"}, 400, "M_INVALID_PARAM"),
            ({"method": "GET", "path": "/_synapse/admin/v1/users"}, 400, "M_INVALID_PARAM"),
            ({"method": "GET", "path": "/_matrix/client/v1/media/config"}, 400, "M_UNRECOGNIZED"),
            ({"method": "PUT", "path": f"{V3}/profile/x/displayname", "body": [1]}, 400, "M_BAD_JSON"),
            ({"type": "send", "room_id": room_id, "txn_id": "t", "content": "x"}, 400, "M_BAD_JSON"),
            ({"type": "send", "room_id": room_id, "content": {}}, 400, "M_MISSING_PARAM"),
            ({"type": "receipt", "room_id": 5, "event_id": "$e"}, 400, "M_INVALID_PARAM"),
        ]
        for frame, status, errcode in cases:
            answer = await conn._call({"type": "request", **frame})
            assert (answer["status"], answer["error"]["errcode"]) == (status, errcode), frame
        # Malformed frames get an error frame, and the connection stays usable.
        assert conn._ws is not None
        await conn._ws.send_str("not json")
        await conn._ws.send_str("[1]")
        await conn._ws.send_str(
            '{"type": "request", "method": "GET", "path": "/_matrix/client/v3/account/whoami"}'
        )
        await conn._ws.send_bytes(b"\x00")
        answer = await conn._call({"type": "launch"})
        assert answer["error"]["errcode"] == "M_UNRECOGNIZED"
        await conn.ping()
        assert conn.last_error is not None and conn.last_error["errcode"] in (
            "M_NOT_JSON",
            "M_BAD_JSON",
            "M_MISSING_PARAM",
        )


async def test_rate_limits_apply_over_the_socket(aiohttp_client: Any, tmp_path: Path) -> None:
    limited = make_config(tmp_path, **NO_PRESENCE, rc_message={"per_second": 0.1, "burst_count": 2})
    hs = await aiohttp_client(create_app_from_config(limited))
    _, bob, room_id = await room_of(hs)
    async with ws_client(hs, bob) as conn:
        statuses = []
        for i in range(4):
            answer = await conn._call(
                {
                    "type": "send",
                    "room_id": room_id,
                    "txn_id": f"r{i}",
                    "content": {"msgtype": "m.text", "body": "x"},
                }
            )
            statuses.append(answer["status"])
            if answer["status"] == 429:
                assert answer["error"]["errcode"] == "M_LIMIT_EXCEEDED"
                assert "retry_after_ms" in answer["error"]
        assert statuses[:2] == [200, 200] and 429 in statuses


async def test_access_log_never_shows_the_token(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The server's own access logger (as `homeserver run` installs it), not aiohttp's default.
    app = create_app_from_config(make_config(tmp_path, **NO_PRESENCE))
    server = TestServer(app)
    await server.start_server(**access_log_kwargs(8008))
    hs = await aiohttp_client(server)
    _, bob, room_id = await room_of(hs)
    caplog.set_level(logging.DEBUG)
    async with ws_client(hs, bob, auth="subprotocol") as conn:
        await conn.send_message(room_id, {"msgtype": "m.text", "body": "x"}, "log-1")
    async with hs.session.ws_connect(f"{base(hs)}{UNSTABLE_PATH}?access_token={bob.token}") as ws:
        await ws.receive(timeout=10)
    access = [r.getMessage() for r in caplog.records if r.name.startswith("homeserver.access")]
    # One line per request over the socket too, with the user; the token nowhere.
    assert any("/send/m.room.message/log-1" in line and bob.user_id in line for line in access)
    assert any("access_token=<redacted>" in line for line in access)
    assert bob.token not in caplog.text


# -- resume and back-pressure ----------------------------------------------------------------------


async def _fill_gap(conn: WebSocketSync, room_id: str, prev_batch: str, got: dict[str, int]) -> list[str]:
    """Page /messages back (over the socket) from a limited timeline's prev_batch until an event
    already received; returns the missed message ids, oldest first."""
    missed: list[str] = []
    token: str | None = prev_batch
    while token:
        page = await conn.messages(room_id, token, limit=100)
        chunk = page.get("chunk") or []
        stop = False
        for event in chunk:
            if event["event_id"] in got:
                stop = True
                break
            if event["type"] == "m.room.message":
                missed.append(event["event_id"])
        if stop or not chunk:
            break
        token = page.get("end")
    missed.reverse()
    return missed


async def test_kill_mid_stream_and_resume_without_loss_or_duplicates(hs: Any) -> None:
    total = 1000
    alice, bob, room_id = await room_of(hs)
    rng = random.Random(17)
    flt = {"room": {"rooms": [room_id], "timeline": {"limit": 5}}, **QUIET}
    # A short client heartbeat: an abort that the client's reader misses (rare, inside aiohttp)
    # is then noticed within a second, as a real client notices a dead network.
    conn = ws_client(hs, bob, filter=flt, heartbeat=1.0)
    await conn.connect()
    await conn.next_sync(10)
    sent: list[str] = []

    async def sender() -> None:
        for i in range(total):
            sent.append(await alice.send(room_id, f"n{i}"))
            if rng.random() < 0.05:
                await asyncio.sleep(0.01)

    drops = 0
    stop_killing = asyncio.Event()

    async def killer() -> None:
        nonlocal drops
        while not stop_killing.is_set():
            await asyncio.sleep(rng.uniform(0.005, 0.08))
            if conn.closed is None:
                conn.drop()  # no close handshake: a network failure, possibly mid-frame
                drops += 1

    got: dict[str, int] = {}  # event id -> order of arrival
    from_sync: list[str] = []  # every message id a sync frame carried (none may come twice)
    gaps: list[str] = []  # prev_batch tokens of limited timelines still to page
    reconnects = 0
    sending = asyncio.ensure_future(sender())
    killing = asyncio.ensure_future(killer())
    try:
        for _ in range(100_000):
            if sending.done() and len(got) >= total and not gaps:
                break
            try:
                while gaps:
                    for event_id in await _fill_gap(conn, room_id, gaps[0], got):
                        got.setdefault(event_id, len(got))
                    gaps.pop(0)
                body = await conn.next_sync(30)
            except ConnectionClosed:
                reconnects += 1
                for _attempt in range(50):
                    try:
                        if rng.random() < 0.2:
                            await asyncio.sleep(
                                0.05
                            )  # offline a while: more than the timeline limit piles up
                        await conn.connect()  # from the last next_batch it handed out
                        break
                    except (ConnectionClosed, aiohttp.ClientError):
                        await asyncio.sleep(0.01)
                continue
            timeline = (body["rooms"]["join"].get(room_id) or {}).get("timeline") or {}
            events = [e for e in timeline.get("events", []) if e["type"] == "m.room.message"]
            if timeline.get("limited") and events:
                gaps.append(timeline["prev_batch"])
            for event in events:
                from_sync.append(event["event_id"])
                got.setdefault(event["event_id"], len(got))
            if len(got) >= total:
                stop_killing.set()
    finally:
        stop_killing.set()
        await sending
        await killing
        await conn.close()
    assert len(from_sync) < total, "no reconnect ever found a limited timeline to fill"
    assert len(from_sync) == len(set(from_sync)), "an event came twice"
    assert set(got) == set(sent), f"missing {len(set(sent) - set(got))}"
    assert drops >= 10 and reconnects >= 10
    # Sync frames bring messages in the order they were sent.
    order = {event_id: i for i, event_id in enumerate(sent)}
    positions = [order[e] for e in from_sync]
    assert positions == sorted(positions)


def _small_receive_buffer(addr_info: Any) -> socket.socket:
    """A client socket with a tiny receive window, set before connecting (so TCP honours it)."""
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_slow_reader_stays_bounded(hs: Any) -> None:
    total = 10_000
    alice, bob, room_id = await room_of(hs)
    services = services_of(hs)
    flt = json.dumps({"room": {"rooms": [room_id], "timeline": {"limit": 20}}, **QUIET})
    url = f"{base(hs)}{UNSTABLE_PATH}?filter={quote(flt)}"
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(url, headers=bob.headers, max_msg_size=0) as ws,
    ):
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "ready"
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "sync"
        (server_conn,) = services.live_sync._by_user[bob.user_id]
        transport = server_conn.request.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        frames_before = server_conn.frames_sent

        # The client reads nothing while 10,000 messages are sent, a few at a time (a reader
        # keeping up would get hundreds of frames).
        biggest_buffer = 0
        frames_after_batch: list[int] = []
        ids: list[str] = []
        for start in range(0, total, 20):
            batch = [alice.send(room_id, f"p{i}") for i in range(start, min(total, start + 20))]
            ids.extend(await asyncio.gather(*batch))
            biggest_buffer = max(biggest_buffer, transport.get_write_buffer_size())
            frames_after_batch.append(server_conn.frames_sent - frames_before)
        stalled_frames = frames_after_batch[-1]
        # The server wrote what the socket buffers took, then stopped computing and writing: no
        # frame at all for the second half of the events, and user-space buffering stays within
        # about one frame above the transport's high-water mark, whatever the backlog.
        assert frames_after_batch[len(frames_after_batch) // 2] == stalled_frames, frames_after_batch
        assert biggest_buffer < 512 * 1024, biggest_buffer

        # Reading again: what piled up arrives as one limited delta since the last token sent.
        frames = 0
        last: dict[str, Any] = {}
        while True:
            msg = await ws.receive(timeout=30)
            assert msg.type == aiohttp.WSMsgType.TEXT
            frame = json.loads(msg.data)
            if frame["type"] != "sync":
                continue
            frames += 1
            timeline = (frame["body"]["rooms"]["join"].get(room_id) or {}).get("timeline") or {}
            if ids[-1] in [e["event_id"] for e in timeline.get("events", [])]:
                last = timeline
                break
        assert frames <= stalled_frames + 2, (frames, stalled_frames)
        assert last["limited"] is True and len(last["events"]) == 20
