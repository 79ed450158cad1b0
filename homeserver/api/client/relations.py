"""Child events of a parent event (relations.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.api.client.message_pagination import direction_param, room_id_param
from homeserver.http.params import query_bool, query_int
from homeserver.http.routing import CLIENT_V1, ApiRequest, Router
from homeserver.services.timeline import MAX_LIMIT, RELATIONS_DEFAULT_LIMIT

routes = Router()


async def _relations(req: ApiRequest, rel_type: str | None, event_type: str | None) -> Any:
    room_id = room_id_param(req)
    query = req.query
    limit = query_int(query, "limit", RELATIONS_DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT) or 0
    recurse = query_bool(query, "recurse") if "recurse" in query else None
    return await req.services.timeline.get_relations(
        req.user.user_id,
        req.user.device_id,
        room_id,
        req.path["eventId"],
        rel_type=rel_type,
        event_type=event_type,
        from_token=query.get("from") or None,
        to_token=query.get("to") or None,
        backwards=direction_param(query),
        limit=limit,
        recurse=recurse,
    )


@routes.get("/rooms/{roomId}/relations/{eventId}", prefixes=CLIENT_V1)
async def getRelatingEvents(req: ApiRequest) -> Any:
    return await _relations(req, None, None)


@routes.get("/rooms/{roomId}/relations/{eventId}/{relType}", prefixes=CLIENT_V1)
async def getRelatingEventsWithRelType(req: ApiRequest) -> Any:
    return await _relations(req, req.path["relType"], None)


@routes.get("/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", prefixes=CLIENT_V1)
async def getRelatingEventsWithRelTypeAndEventType(req: ApiRequest) -> Any:
    return await _relations(req, req.path["relType"], req.path["eventType"])
