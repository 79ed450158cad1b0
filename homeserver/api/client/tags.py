"""Room tags (tags.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden
from homeserver.http.routing import ApiRequest, Router

routes = Router()


def _check(req: ApiRequest) -> tuple[str, str]:
    user_id = req.path["userId"]
    if user_id != req.user.user_id:
        raise forbidden("Cannot access another user's tags")
    room_id = req.path["roomId"]
    if not ids.is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return user_id, room_id


@routes.get("/user/{userId}/rooms/{roomId}/tags")
async def getRoomTags(req: ApiRequest) -> Any:
    user_id, room_id = _check(req)
    return {"tags": await req.services.tags.get_tags(user_id, room_id)}


@routes.put("/user/{userId}/rooms/{roomId}/tags/{tag}")
async def setRoomTag(req: ApiRequest) -> Any:
    user_id, room_id = _check(req)
    body = await req.json(allow_empty=False)
    await req.services.tags.add_tag(user_id, room_id, req.path["tag"], body)
    return {}


@routes.delete("/user/{userId}/rooms/{roomId}/tags/{tag}")
async def deleteRoomTag(req: ApiRequest) -> Any:
    user_id, room_id = _check(req)
    await req.services.tags.remove_tag(user_id, room_id, req.path["tag"])
    return {}
