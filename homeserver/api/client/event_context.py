"""Event context (event_context.yaml) and one event by id (rooms.yaml: getOneRoomEvent)."""

from __future__ import annotations

from typing import Any

from homeserver.api.client.message_pagination import room_event_filter_param, room_id_param
from homeserver.http.params import query_int
from homeserver.http.routing import ApiRequest, Router
from homeserver.services.timeline import DEFAULT_LIMIT, MAX_LIMIT

routes = Router()


@routes.get("/rooms/{roomId}/context/{eventId}")
async def getEventContext(req: ApiRequest) -> Any:
    room_id = room_id_param(req)
    limit = query_int(req.query, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT) or 0
    flt = await room_event_filter_param(req)
    return await req.services.timeline.get_context(
        req.user.user_id, req.user.device_id, room_id, req.path["eventId"], limit=limit, flt=flt
    )


@routes.get("/rooms/{roomId}/event/{eventId}")
async def getOneRoomEvent(req: ApiRequest) -> Any:
    room_id = room_id_param(req)
    return await req.services.timeline.get_event(
        req.user.user_id, req.user.device_id, room_id, req.path["eventId"]
    )
