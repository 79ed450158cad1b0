"""Presence (presence.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.params import get_str
from homeserver.http.routing import ApiRequest, Router

routes = Router()


def _user_id(req: ApiRequest) -> str:
    user_id = req.path["userId"]
    if not ids.is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
    return user_id


@routes.get("/presence/{userId}/status")
async def getPresence(req: ApiRequest) -> Any:
    return await req.services.presence.get_presence(req.user.user_id, _user_id(req))


@routes.put("/presence/{userId}/status")
async def setPresence(req: ApiRequest) -> Any:
    target = _user_id(req)
    body = await req.json(allow_empty=False)
    presence = get_str(body, "presence", required=True)
    status_msg = get_str(body, "status_msg")
    await req.services.presence.set_presence(
        req.user.user_id, req.user.device_id, target, presence, status_msg
    )
    return {}
