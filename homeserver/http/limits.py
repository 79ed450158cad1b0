"""Request size and slowness limits that apply before (or while) a body is read.

A declared ``Content-Length`` above the route's limit is refused with 413 ``M_TOO_LARGE`` before
a byte of the body is read; with ``Expect: 100-continue`` the client is refused before it sends
the body at all. Bodies are read with an idle timeout, so a client that stops sending in the
middle of a body does not hold a handler (and its buffer) forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from homeserver.core.errors import MatrixError
from homeserver.http.middleware import CORS_HEADERS, error_response

# A body that makes no progress for this long is abandoned (408). Generous: mobile uplinks stall.
BODY_IDLE_TIMEOUT = 60.0

ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def too_large(limit: int) -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", f"Request body too large (limit {limit} bytes)")


def body_timeout() -> MatrixError:
    return MatrixError(408, "M_UNKNOWN", "Timed out reading the request body")


def check_declared_length(request: web.BaseRequest, limit: int) -> None:
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)


def expect_handler(limit: int) -> ExpectHandler:
    """aiohttp's ``Expect: 100-continue`` hook: refuse an oversized body before it is sent."""

    async def handle(request: web.Request) -> web.StreamResponse | None:
        length = request.content_length
        if length is not None and length > limit:
            error = too_large(limit)
        elif request.headers.get("Expect", "").lower() != "100-continue":
            error = MatrixError(417, "M_UNKNOWN", "Unsupported Expect header")
        else:
            if request.version >= (1, 1):
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0  # the real response has not started yet
            return None
        # Answered here, outside the middlewares. The client waits for our verdict and has sent
        # no body: close the connection rather than drain it.
        response = error_response(error)
        response.headers.update(CORS_HEADERS)
        response.force_close()
        return response

    return handle


async def read_body(request: web.BaseRequest, limit: int, idle_timeout: float | None = None) -> bytes:
    """The whole body, at most `limit` bytes, failing if no data arrives for `idle_timeout`."""
    check_declared_length(request, limit)
    body = bytearray()
    async for chunk in body_chunks(request, idle_timeout):
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


async def body_chunks(
    request: web.BaseRequest, idle_timeout: float | None = None, chunk_size: int = 256 * 1024
) -> AsyncIterator[bytes]:
    """The body chunk by chunk with an idle timeout per chunk (aiohttp applies back-pressure)."""
    content = request.content
    timeout = idle_timeout if idle_timeout is not None else BODY_IDLE_TIMEOUT
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await content.read(chunk_size)
        except TimeoutError:
            raise body_timeout() from None
        if not chunk:
            return
        yield chunk
