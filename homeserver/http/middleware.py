"""Middlewares: request id, CORS, Matrix error bodies for every failure, metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from random import getrandbits

from aiohttp import web

from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError
from homeserver.http.access_log import REQUEST_ID, REQUEST_METRICS
from homeserver.http.logcontext import request_id_var
from homeserver.http.metrics import finish_request, start_request
from homeserver.metrics.usage import Measure

logger = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}

HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    with Measure("encode_json_response"):
        data = hjson.dumps(body)
    return web.Response(body=data, status=status, content_type="application/json", headers=headers)


def error_response(err: MatrixError) -> web.Response:
    return json_response(err.to_body(), err.status, dict(err.headers) or None)


def _from_http_exception(exc: web.HTTPException) -> MatrixError:
    status = exc.status
    if status == 404:
        return MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    if status == 405:
        return MatrixError(405, "M_UNRECOGNIZED", "Unrecognized request method")
    if status == 413:
        return MatrixError(413, "M_TOO_LARGE", "Request body too large")
    if status >= 500:
        return MatrixError(status, "M_UNKNOWN", exc.reason or "Server error")
    return MatrixError(status, "M_UNKNOWN", exc.reason or "Request failed")


def _servlet(request: web.Request) -> str:
    """The metrics' `servlet` label: the route's operationId, never the raw path."""
    if request.method == "OPTIONS":
        return "cors_preflight"
    match = request.match_info
    if match.http_exception is not None:
        return "unrecognised"
    return getattr(match.handler, "__name__", "unknown")


@web.middleware
async def matrix_middleware(request: web.Request, handler: HandlerT) -> web.StreamResponse:
    # Only needs to be unique enough to tell log lines apart: no system call per request.
    request_id = f"{request.method}-{getrandbits(32):08x}"
    token = request_id_var.set(request_id)
    metrics, metric_tokens = start_request(request.method, _servlet(request))
    metrics.remote = request.remote
    request[REQUEST_METRICS] = metrics
    request[REQUEST_ID] = request_id
    status = 500
    body_bytes: int | None = None
    try:
        if request.method == "OPTIONS":
            # CORS preflight: every path answers, whatever its auth.
            response: web.StreamResponse = json_response({})
        else:
            try:
                response = await handler(request)
            except MatrixError as err:
                if err.status >= 500:
                    logger.error("%s %s failed: %s", request.method, request.path, err)
                response = error_response(err)
            except web.HTTPException as exc:
                if exc.status < 400:  # redirects etc. pass through unchanged
                    status = exc.status
                    raise
                response = error_response(_from_http_exception(exc))
            except Exception:
                logger.exception("unhandled error on %s %s", request.method, request.path)
                response = error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))
        if not response.prepared:
            response.headers.update(CORS_HEADERS)
        status = response.status
        if isinstance(response, web.Response):
            body_bytes = response.content_length
        return response
    finally:
        finish_request(metrics, status, body_bytes, metric_tokens)
        request_id_var.reset(token)
