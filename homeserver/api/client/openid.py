"""OpenID (openid.yaml): requestOpenIdToken."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import CLIENT_V3_R0, ApiRequest, Router

routes = Router()


@routes.post("/user/{userId}/openid/request_token", prefixes=CLIENT_V3_R0)
async def requestOpenIdToken(req: ApiRequest) -> dict[str, Any]:
    await req.json()  # an empty object, reserved for future use; malformed JSON is still refused
    return await req.services.openid.request_token(req.user, req.path["userId"])
