"""Typing notifications (typing.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.params import get_bool, get_int
from homeserver.http.routing import ApiRequest, Router

routes = Router()


@routes.put("/rooms/{roomId}/typing/{userId}")
async def setTyping(req: ApiRequest) -> Any:
    room_id = req.path["roomId"]
    user_id = req.path["userId"]
    if not ids.is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    if not ids.is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
    body = await req.json(allow_empty=False)
    typing = get_bool(body, "typing", required=True)
    timeout = get_int(body, "timeout") if typing else None
    await req.services.typing.set_typing(
        req.user.user_id, req.user.device_id, room_id, user_id, typing, timeout
    )
    return {}
