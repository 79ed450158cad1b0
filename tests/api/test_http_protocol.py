"""Requests that aiohttp refuses before routing still get Matrix error bodies (homeserver.http.protocol).

The listener is the one ``homeserver run`` uses (MatrixAppRunner on a loopback TCP site), driven with
raw HTTP so that malformed requests reach it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.http.protocol import MAX_LINE_SIZE, MatrixAppRunner


@pytest.fixture
async def port(config: HomeserverConfig) -> AsyncIterator[int]:
    runner = MatrixAppRunner(create_app_from_config(config), access_log=None)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", free)
    await site.start()
    try:
        yield free
    finally:
        await runner.cleanup()


async def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await reader.read()  # these errors close the connection
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, json.loads(body) if body else None


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()


async def test_too_long_request_line_is_a_matrix_error(port: int) -> None:
    status, headers, body = await raw_request(
        port, get("/_matrix/client/v3/rooms/" + "x" * (MAX_LINE_SIZE + 10))
    )
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert body["errcode"] == "M_TOO_LARGE" and isinstance(body["error"], str)


async def test_long_urls_below_the_limit_reach_the_routes(port: int) -> None:
    # 20 KB of query string: past aiohttp's default 8 KiB, routed and answered by the app.
    status, _, body = await raw_request(port, get("/_matrix/client/versions?x=" + "y" * 20000))
    assert status == 200 and "versions" in body


async def test_malformed_request_line_is_a_matrix_error(port: int) -> None:
    status, headers, body = await raw_request(port, b"GET /a b c HTTP/9.9.9\r\n\r\n")
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json")
    assert isinstance(body["errcode"], str) and isinstance(body["error"], str)


async def test_too_long_header_is_a_matrix_error(port: int) -> None:
    request = (
        f"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Big: {'z' * (MAX_LINE_SIZE + 10)}\r\n\r\n"
    )
    status, _, body = await raw_request(port, request.encode())
    assert status == 400 and body["errcode"] == "M_TOO_LARGE"
