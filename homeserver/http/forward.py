"""A worker hands a request it does not serve (a write) to the main process, unchanged.

The client's own credentials travel with it (main authenticates the user as usual); the worker
appends the client's address to X-Forwarded-For, which main honours when the listener named in
`instance_map` has `x_forwarded: true` and trusts the workers' addresses (docs/scale-out.md).
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from homeserver.core.errors import MatrixError

logger = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp sets itself.
_SKIP_REQUEST = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
        "content-length",
    }
)
_SKIP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
)


async def forward_to_main(
    request: web.Request, session: aiohttp.ClientSession, base: str
) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_REQUEST}
    previous = request.headers.get("X-Forwarded-For")
    client = request.remote or ""
    headers["X-Forwarded-For"] = f"{previous}, {client}" if previous else client
    body = await request.read() if request.can_read_body else None
    try:
        async with session.request(
            request.method, base + request.raw_path, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            response = web.Response(status=upstream.status, body=payload)
            for key, value in upstream.headers.items():
                if key.lower() not in _SKIP_RESPONSE:
                    response.headers.add(key, value)
            return response
    except (aiohttp.ClientError, OSError) as exc:
        logger.warning("forwarding %s %s to main failed: %s", request.method, request.path, exc)
        raise MatrixError(503, "M_UNKNOWN", "The main process is unreachable; try again") from exc
