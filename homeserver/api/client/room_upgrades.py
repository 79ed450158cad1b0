"""Room upgrades (room_upgrades.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import ApiRequest, Router

routes = Router()


@routes.post("/rooms/{roomId}/upgrade")
async def upgradeRoom(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    new_room_id = await req.services.room_upgrades.upgrade_room(req.user, req.path["roomId"], body)
    return {"replacement_room": new_room_id}
