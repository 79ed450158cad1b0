"""The HTTP server around the application: connection limits and Matrix errors from the HTTP layer.

aiohttp answers requests its parser rejects (an over-long request line or header, too many
headers, garbage) itself, with a plain-text 400, before any middleware runs. Clients expect a
Matrix error body everywhere, so the request handler's `handle_error` is replaced with one that
answers in JSON: 414 for a request line that is too long, 431 for headers, both ``M_TOO_LARGE``.

Connection hygiene: a connection that is idle, or has not completed its request headers, for
KEEPALIVE_TIMEOUT after connecting or after its previous response is closed (aiohttp's keep-alive
timer covers both). It is longer than nginx's default upstream keep-alive (60 s) so the proxy, not
us, closes idle upstream connections and never reuses one we are closing. Slow bodies are cut off
by the idle timeout in `http/limits.py`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from homeserver.core.errors import MatrixError
from homeserver.http.middleware import CORS_HEADERS, error_response

logger = logging.getLogger(__name__)

_REQUEST_TARGET = re.compile(r"(?:[A-Z]+ )?(?:/|https?://)")

KEEPALIVE_TIMEOUT = 75.0
# Twisted (Synapse) accepts 16 KiB lines; URLs get twice that, as inline filters and long
# pagination tokens are URL-encoded.
MAX_LINE_SIZE = 32 * 1024
MAX_FIELD_SIZE = 16 * 1024
MAX_HEADERS = 128
# After a response, drain an unread request body for at most this long before closing.
LINGERING_TIME = 5.0

SERVER_SETTINGS: dict[str, Any] = {
    "keepalive_timeout": KEEPALIVE_TIMEOUT,
    "max_line_size": MAX_LINE_SIZE,
    "max_field_size": MAX_FIELD_SIZE,
    "max_headers": MAX_HEADERS,
    "lingering_time": LINGERING_TIME,
}


def http_layer_error(status: int, exc: BaseException | None) -> MatrixError:
    """The Matrix error for a request aiohttp's HTTP layer could not turn into a request."""
    if isinstance(exc, LineTooLong):
        # The exception carries the start of the offending line: the URL (C parser) or the
        # whole request line (pure-Python parser) for a long request target, else a header.
        line = exc.args[0] if exc.args else b""
        text = bytes(line).decode("latin-1") if isinstance(line, bytes | bytearray) else str(line)
        if _REQUEST_TARGET.match(text):
            return MatrixError(414, "M_TOO_LARGE", "Request line too long")
        return MatrixError(431, "M_TOO_LARGE", "Request header too long")
    if isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower():
        return MatrixError(431, "M_TOO_LARGE", "Too many request headers")
    if isinstance(exc, HttpProcessingError) or status < 500:
        return MatrixError(400 if status >= 500 else status, "M_UNKNOWN", "Malformed HTTP request")
    return MatrixError(status, "M_UNKNOWN", "Internal server error")


class MatrixRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with Matrix error bodies for HTTP-layer failures."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            logger.info("rejected HTTP request from %s: %s", request.remote, type(exc).__name__)
        elif status >= 500:
            logger.error("error handling request from %s", request.remote, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        response = error_response(http_layer_error(status, exc))
        response.headers.update(CORS_HEADERS)
        response.force_close()  # the parser state is unknown: never reuse this connection
        return response


class MatrixServer(web.Server):
    def __call__(self) -> RequestHandler:
        return MatrixRequestHandler(self, loop=self._loop, **self._kwargs)


class MatrixAppRunner(web.AppRunner):
    """An AppRunner whose connections use `MatrixRequestHandler` and SERVER_SETTINGS."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **{**SERVER_SETTINGS, **kwargs})

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Same handler, factory and settings; only the per-connection protocol class differs.
        server.__class__ = MatrixServer
        return server
