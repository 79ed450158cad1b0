"""The event closest to a timestamp (room_event_by_timestamp.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.api.client.message_pagination import direction_param, room_id_param
from homeserver.core.errors import MatrixError
from homeserver.http.params import query_int
from homeserver.http.routing import CLIENT_V1, ApiRequest, Router

routes = Router()


@routes.get("/rooms/{roomId}/timestamp_to_event", prefixes=CLIENT_V1)
async def getEventByTimestamp(req: ApiRequest) -> Any:
    room_id = room_id_param(req)
    query = req.query
    ts = query_int(query, "ts")
    if ts is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter 'ts'")
    backwards = direction_param(query, required=True)
    return await req.services.timeline.event_at_timestamp(
        req.user.user_id, room_id, ts, forwards=not backwards
    )
