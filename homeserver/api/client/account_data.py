"""Client config / account data (account-data.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.http.routing import ApiRequest, Router

routes = Router()


def _check(req: ApiRequest, room: bool) -> tuple[str, str]:
    user_id = req.path["userId"]
    if user_id != req.user.user_id:
        raise forbidden("Cannot access another user's account data")
    room_id = ""
    if room:
        room_id = req.path["roomId"]
        if not ids.is_valid_room_id(room_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    return user_id, room_id


@routes.put("/user/{userId}/account_data/{type}")
async def setAccountData(req: ApiRequest) -> Any:
    user_id, _ = _check(req, room=False)
    content = await req.json(allow_empty=False)
    await req.services.account_data.put(user_id, "", req.path["type"], content)
    return {}


@routes.get("/user/{userId}/account_data/{type}")
async def getAccountData(req: ApiRequest) -> Any:
    user_id, _ = _check(req, room=False)
    content = await req.services.account_data.get(user_id, "", req.path["type"])
    if content is None:
        raise not_found("Account data not found")
    return content


@routes.put("/user/{userId}/rooms/{roomId}/account_data/{type}")
async def setAccountDataPerRoom(req: ApiRequest) -> Any:
    user_id, room_id = _check(req, room=True)
    content = await req.json(allow_empty=False)
    await req.services.account_data.put(user_id, room_id, req.path["type"], content)
    return {}


@routes.get("/user/{userId}/rooms/{roomId}/account_data/{type}")
async def getAccountDataPerRoom(req: ApiRequest) -> Any:
    user_id, room_id = _check(req, room=True)
    content = await req.services.account_data.get(user_id, room_id, req.path["type"])
    if content is None:
        raise not_found("Account data not found")
    return content
