"""Client-server requests carried over the WebSocket, served by the application itself.

A request frame becomes an internal `web.Request` (method, path, the connection's credentials, the
body) that goes through the application exactly like one from the network: the same middlewares
(request id, errors, metrics, `x_forwarded`), route auth, rate limits, body limits, parameter
checks and handler. Only the socket differs: the request borrows the WebSocket's connection for its
peer address and listener, and a response is captured, never written to the socket (a handler
that streams a response, such as a media download, gets a writer that discards it and the client
an error). The access log gets one line per request, like any other.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import RawRequestMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError

logger = logging.getLogger(__name__)


class _DiscardingWriter(AbstractStreamWriter):
    """Where a streamed response would go: nowhere (the WebSocket carries JSON frames only)."""

    def __init__(self) -> None:
        self.buffer_size = 0
        self.output_size = 0
        self.length = 0
        self.written = False

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.written = True

    async def write_eof(self, chunk: bytes = b"") -> None:
        self.written = True

    async def drain(self) -> None:
        return None

    def enable_compression(self, encoding: str = "deflate", strategy: Any = None) -> None:
        return None

    def enable_chunking(self) -> None:
        return None

    async def write_headers(self, status_line: str, headers: Any) -> None:
        self.written = True

    def send_headers(self) -> None:
        return None


def _internal_request(
    origin: web.Request, method: str, path: str, headers: dict[str, str], body: bytes, max_body: int
) -> web.Request:
    loop = asyncio.get_running_loop()
    header_map = CIMultiDictProxy(CIMultiDict(headers))
    message = RawRequestMessage(
        method,
        path,
        origin.version,
        header_map,
        tuple((k.encode(), v.encode()) for k, v in headers.items()),
        False,  # should_close
        None,  # compression
        False,  # upgrade
        False,  # chunked
        URL(path),
    )
    payload = StreamReader(origin.protocol, max(2**16, len(body)), loop=loop)
    if body:
        payload.feed_data(body)
    payload.feed_eof()
    task = asyncio.current_task()
    assert task is not None
    return web.Request(
        message,
        payload,
        origin.protocol,
        _DiscardingWriter(),
        task,
        loop,
        client_max_size=max_body,
        remote=origin.remote,
        scheme=origin.scheme,
        host=origin.host,
    )


async def dispatch(
    origin: web.Request,
    method: str,
    path: str,
    body: Any,
    access_token: str,
    max_body: int,
) -> tuple[int, Any]:
    """Serve one request through `origin`'s application; (status, JSON body)."""
    data = hjson.dumps(body) if body is not None else b""
    headers = {
        "Host": origin.host,
        "Authorization": f"Bearer {access_token}",
        "Content-Length": str(len(data)),
        "User-Agent": origin.headers.get("User-Agent", ""),
    }
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = _internal_request(origin, method, path, headers, data, max_body)
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await origin.app._handle(request)
    _access_log(origin, request, response, loop.time() - started)
    raw = response.body if isinstance(response, web.Response) else None
    if response.prepared or not isinstance(raw, bytes | bytearray):
        return 400, MatrixError(
            400, "M_UNRECOGNIZED", "This endpoint's response cannot be carried over the WebSocket"
        ).to_body()
    if not raw:
        return response.status, {}
    try:
        return response.status, hjson.loads(bytes(raw))
    except ValueError:
        return 400, MatrixError(400, "M_UNRECOGNIZED", "This endpoint does not answer in JSON").to_body()


def _access_log(
    origin: web.Request, request: web.Request, response: web.StreamResponse, elapsed: float
) -> None:
    access_logger = getattr(origin.protocol, "access_logger", None)
    if access_logger is None or not access_logger.enabled:
        return
    try:
        access_logger.log(request, response, elapsed)
    except Exception:  # a log line must never fail a request
        logger.exception("access log failed for a WebSocket request")
