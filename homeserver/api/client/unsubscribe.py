"""The unsubscribe link of notification emails, at Synapse's path `/_synapse/client/unsubscribe`.

GET shows a confirmation page (link scanners in mail systems open every link: a GET must not
unsubscribe); POST unsubscribes, which is also RFC 8058's one-click `List-Unsubscribe-Post`."""

from __future__ import annotations

import html

from aiohttp import web

from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

PREFIX = ("/_synapse/client",)


def _token(req: ApiRequest) -> str:
    token = req.query.get("token")
    if not token:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter: token")
    return token


def _page(title: str, body: str) -> web.Response:
    text = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, content_type="text/html", charset="utf-8")


@routes.get("/unsubscribe", auth=Auth.NONE, prefixes=PREFIX)
async def getUnsubscribe(req: ApiRequest) -> web.Response:
    token = html.escape(_token(req), quote=True)
    form = (
        '<p>Stop receiving notification emails for this address?</p><form method="post" '
        f'action="?token={token}"><button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", form)


@routes.post("/unsubscribe", auth=Auth.NONE, prefixes=PREFIX)
async def postUnsubscribe(req: ApiRequest) -> web.Response:
    await req.services.pushers.unsubscribe(_token(req))
    return _page("Unsubscribed", "<p>You will no longer receive notification emails.</p>")
