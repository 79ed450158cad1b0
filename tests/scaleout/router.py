"""A small front door for tests and bench/: routes as Synapse's worker documentation does.

/sync, /events and the read-only room endpoints go to a client_reader chosen by the access token
(sticky per user); when that reader is down the next one answers (a client "reconnects to
another"). Everything else goes to main.
"""

from __future__ import annotations

import hashlib
import re

import aiohttp
from aiohttp import web

READER_PATHS = re.compile(
    r"^/_matrix/client/(v3|r0|unstable)/("
    r"sync|events|initialSync|rooms/[^/]+/(messages|context/.*|members|joined_members|state(/.*)?|event/.*)"
    r"|keys/query|keys/changes|publicRooms|user_directory/search|search|profile/.*|voip/turnServer"
    r")$"
)
_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header.partition(" ")[2] or request.query.get("access_token", "")


def make_router(main: str, readers: list[str]) -> web.Application:
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def on_startup(app: web.Application) -> None:
        app[session_key] = aiohttp.ClientSession(auto_decompress=False)

    async def on_cleanup(app: web.Application) -> None:
        await app[session_key].close()

    def upstreams(request: web.Request) -> list[str]:
        if readers and READER_PATHS.match(request.path) and request.method in ("GET", "POST"):
            start = int(hashlib.sha256(_token(request).encode()).hexdigest(), 16) % len(readers)
            return readers[start:] + readers[:start]
        return [main]

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        last: Exception | None = None
        for upstream in upstreams(request):
            try:
                async with request.app[session_key].request(
                    request.method,
                    upstream + request.raw_path,
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                ) as resp:
                    payload = await resp.read()
                    response = web.Response(status=resp.status, body=payload)
                    for key, value in resp.headers.items():
                        if key.lower() not in _HOP | {"server", "date"}:
                            response.headers.add(key, value)
                    response.headers["X-Upstream"] = upstream
                    return response
            except (aiohttp.ClientConnectionError, OSError) as exc:
                last = exc  # that process is gone: the next reader takes the user
        return web.json_response({"errcode": "M_UNKNOWN", "error": f"no upstream: {last}"}, status=502)

    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app
