"""HTTP-layer limits: long lines, oversized declared bodies, Expect: 100-continue, slow clients.

These drive the server over raw sockets, since an HTTP library would refuse to send (or would
fix up) most of these requests. The server runs with the same runner as `homeserver run`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.http import limits
from homeserver.http.server import MatrixAppRunner

from .helpers import auth, register

MAX_BODY = 4096
SHORT_KEEPALIVE = 0.5


class MatrixTestServer(TestServer):
    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return MatrixAppRunner(self.app, **kwargs, keepalive_timeout=SHORT_KEEPALIVE)


@pytest.fixture
async def server(aiohttp_client: Any, tmp_path: Any) -> AsyncIterator[Any]:
    from ..conftest import make_config

    config: HomeserverConfig = make_config(tmp_path, max_request_body_size=MAX_BODY)
    client = await aiohttp_client(MatrixTestServer(create_app_from_config(config)))
    yield client


async def _exchange(client: Any, raw: bytes, *, read_all: bool = True) -> bytes:
    """Send `raw` on a fresh connection and return everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(30):  # a hang is a failure, not a timing assertion
            return await reader.read() if read_all else await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


def _parse(response: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def _request(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: localhost",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_long_since_and_filter_reach_the_application(server: Any) -> None:
    user = await register(server)
    since = "s" + "9" * 2047  # a 2 KB pagination token
    resp = await server.get(
        f"/_matrix/client/v3/sync?since={since}&timeout=0", headers=auth(user["access_token"])
    )
    body = await resp.json()
    assert body.get("errcode") != "M_TOO_LARGE", body  # the HTTP layer let it through
    assert resp.status in (200, 400), body
    # A 12 KB inline filter (beyond aiohttp's default 8 KB line) still reaches the handler.
    filter_json = json.dumps({"room": {"not_rooms": [f"!r{i}:localhost" for i in range(600)]}})
    resp = await server.get(
        "/_matrix/client/v3/sync",
        params={"filter": filter_json, "timeout": "0"},
        headers=auth(user["access_token"]),
    )
    assert resp.status == 200, await resp.text()


async def test_overlong_request_line_gets_a_matrix_error(server: Any) -> None:
    response = await _exchange(
        server, _request("GET", "/_matrix/client/v3/rooms/!" + "a" * 100_000 + "/state")
    )
    status, headers, body = _parse(response)
    assert status == 414
    assert headers["content-type"].startswith("application/json")
    assert body["errcode"] == "M_TOO_LARGE"


async def test_huge_bearer_token_gets_a_matrix_error(server: Any) -> None:
    headers = {"Authorization": "Bearer " + "t" * 100_000}
    status, _, body = _parse(
        await _exchange(server, _request("GET", "/_matrix/client/v3/account/whoami", headers))
    )
    assert status == 431
    assert body["errcode"] == "M_TOO_LARGE"


async def test_malformed_request_gets_a_matrix_error(server: Any) -> None:
    status, _, body = _parse(await _exchange(server, b"GET /x HTTP/1.1\r\nHost localhost\r\n\r\n"))
    assert status == 400
    assert body["errcode"] == "M_UNKNOWN"


async def test_declared_oversized_body_is_refused_before_it_is_sent(server: Any) -> None:
    # Only the headers go out: a server that waited for the body would never answer.
    request = _request(
        "POST",
        "/_matrix/client/v3/login",
        {"Content-Type": "application/json", "Content-Length": str(MAX_BODY + 1)},
    )
    status, _, body = _parse(await _exchange(server, request))
    assert status == 413
    assert body["errcode"] == "M_TOO_LARGE"


async def test_expect_continue(server: Any) -> None:
    too_big = {"Content-Length": str(50 * 1024 * 1024), "Expect": "100-continue"}
    response = await _exchange(server, _request("POST", "/_matrix/client/v3/login", too_big))
    assert b"100 Continue" not in response
    status, _, body = _parse(response)
    assert status == 413 and body["errcode"] == "M_TOO_LARGE"

    # Within the limit: 100 Continue, then the request is handled as usual.
    payload = b'{"type": "m.login.password", "user": "nobody", "password": "x"}'
    fits = {"Content-Length": str(len(payload)), "Expect": "100-continue", "Connection": "close"}
    reader, writer = await asyncio.open_connection(server.server.host, server.server.port)
    try:
        writer.write(_request("POST", "/_matrix/client/v3/login", fits))
        async with asyncio.timeout(30):
            interim = await reader.readuntil(b"\r\n\r\n")
            assert interim.startswith(b"HTTP/1.1 100 Continue")
            writer.write(payload)
            status, _, body = _parse(await reader.read())
    finally:
        writer.close()
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_stalled_body_times_out(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "BODY_IDLE_TIMEOUT", 0.3)
    headers = {"Content-Type": "application/json", "Content-Length": "100"}
    status, _, body = _parse(
        await _exchange(server, _request("POST", "/_matrix/client/v3/login", headers, b"{"))
    )
    assert status == 408
    assert body["errcode"] == "M_UNKNOWN"


async def test_idle_and_slow_header_connections_are_closed(server: Any) -> None:
    # Nothing sent at all, and headers that never finish: the server closes both.
    assert await _exchange(server, b"") == b""
    assert await _exchange(server, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: loc") == b""
