"""The HTTP protocol layer: Matrix error bodies for requests that never reach the application.

aiohttp answers a request it cannot parse (request line or header too long, malformed request
line or headers, bad chunked encoding) itself, with a ``text/plain`` body, before any middleware
runs. Clients expect ``{"errcode", "error"}`` for every 4xx, so the listener's request handler
keeps aiohttp's status and logging and only swaps the body for a Matrix error.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from homeserver.core import json as hjson

# Long URLs are legitimate (filters inline in /messages, many `via`s): allow 64 KiB request
# lines and header fields instead of aiohttp's 8 KiB.
MAX_LINE_SIZE = 65536
MAX_FIELD_SIZE = 65536


class MatrixRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            errcode, error = "M_TOO_LARGE", "Request line or header too long"
        elif status >= 500:
            errcode, error = "M_UNKNOWN", "Internal server error"
        else:
            errcode, error = "M_UNKNOWN", f"Malformed HTTP request: {getattr(exc, 'message', '') or status}"
        body = web.Response(
            status=response.status,
            body=hjson.dumps({"errcode": errcode, "error": error}),
            content_type="application/json",
        )
        body.force_close()
        return body


class MatrixServer(web.Server):
    """``web.Server`` whose connections use :class:`MatrixRequestHandler`."""

    def __call__(self) -> RequestHandler:
        # Same construction as web.Server.__call__, with our handler class.
        return MatrixRequestHandler(self, loop=self._loop, **self._kwargs)


class MatrixAppRunner(web.AppRunner):
    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_LINE_SIZE)
        kwargs.setdefault("max_field_size", MAX_FIELD_SIZE)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = MatrixServer  # only __call__ differs; no state to convert
        return server
