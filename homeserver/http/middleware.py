"""Middlewares: request id, CORS, Matrix error bodies for every failure, metrics."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError
from homeserver.http.logcontext import request_id_var
from homeserver.http.metrics import REQUEST_SECONDS, REQUESTS

logger = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}

HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=hjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


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


@web.middleware
async def matrix_middleware(request: web.Request, handler: HandlerT) -> web.StreamResponse:
    request_id = f"{request.method}-{secrets.token_hex(4)}"
    token = request_id_var.set(request_id)
    start = time.perf_counter()
    route = "unmatched"
    status = 500
    try:
        resource = request.match_info.route.resource
        if resource is not None:
            route = resource.canonical
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
                    raise
                response = error_response(_from_http_exception(exc))
            except Exception:
                logger.exception("unhandled error on %s %s", request.method, request.path)
                response = error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))
        if not response.prepared:
            response.headers.update(CORS_HEADERS)
        status = response.status
        return response
    finally:
        elapsed = time.perf_counter() - start
        REQUEST_SECONDS.labels(route).observe(elapsed)
        REQUESTS.labels(request.method, route, str(status)).inc()
        request_id_var.reset(token)
