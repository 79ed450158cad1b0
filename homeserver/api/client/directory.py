"""Room aliases (directory.yaml): setRoomAlias, getRoomIdByAlias, deleteRoomAlias, getLocalAliases."""

from __future__ import annotations

from typing import Any

from homeserver.http.params import get_str
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.put("/directory/room/{roomAlias}")
async def setRoomAlias(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    room_id = get_str(body, "room_id", required=True)
    await req.services.directory.create_alias(req.user, req.path["roomAlias"], room_id)
    return {}


@routes.get("/directory/room/{roomAlias}", auth=Auth.NONE)
async def getRoomIdByAlias(req: ApiRequest) -> Any:
    return await req.services.directory.resolve_alias(req.path["roomAlias"])


@routes.delete("/directory/room/{roomAlias}")
async def deleteRoomAlias(req: ApiRequest) -> Any:
    await req.services.directory.delete_alias(req.user, req.path["roomAlias"])
    return {}


@routes.get("/rooms/{roomId}/aliases")
async def getLocalAliases(req: ApiRequest) -> Any:
    aliases = await req.services.directory.local_aliases(req.user, req.path["roomId"])
    return {"aliases": aliases}
