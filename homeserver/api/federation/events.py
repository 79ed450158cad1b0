"""Retrieving events (events.yaml): getRoomState, getRoomStateIds, getEvent, getEventByTimestamp."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError, missing_param
from homeserver.http.params import query_int
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)


def _event_id_param(req: ApiRequest) -> str:
    event_id = req.query.get("event_id")
    if not event_id:
        raise missing_param("Missing required parameter: event_id")
    return event_id


@routes.get("/state/{roomId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getRoomState(req: ApiRequest) -> dict[str, Any]:
    reads = req.services.federation_reads
    return await reads.state(req.origin, req.path["roomId"], _event_id_param(req))


@routes.get("/state_ids/{roomId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getRoomStateIds(req: ApiRequest) -> dict[str, Any]:
    reads = req.services.federation_reads
    return await reads.state_ids(req.origin, req.path["roomId"], _event_id_param(req))


@routes.get("/event/{eventId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getEvent(req: ApiRequest) -> dict[str, Any]:
    return await req.services.federation_reads.event(req.origin, req.path["eventId"])


@routes.get("/timestamp_to_event/{roomId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getEventByTimestamp(req: ApiRequest) -> dict[str, Any]:
    ts = query_int(req.query, "ts", minimum=-(2**63))
    if ts is None:
        raise missing_param("Missing required parameter: ts")
    direction = req.query.get("dir")
    if not direction:
        raise missing_param("Missing required parameter: dir")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'dir' must be 'b' or 'f'")
    return await req.services.federation_reads.timestamp_to_event(
        req.origin, req.path["roomId"], ts, forwards=direction == "f"
    )
