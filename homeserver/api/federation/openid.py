"""OpenID (openid.yaml): exchangeOpenIdToken. Called by services holding a user's OpenID token,
not by homeservers, so it carries no X-Matrix signature."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.get("/openid/userinfo", auth=Auth.NONE, prefixes=("/_matrix/federation/v1",))
async def exchangeOpenIdToken(req: ApiRequest) -> dict[str, Any]:
    return await req.services.openid.userinfo(req.query.get("access_token"))
