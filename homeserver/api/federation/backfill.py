"""Backfilling and retrieving missing events (backfill.yaml): backfillRoom, getMissingPreviousEvents."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, missing_param
from homeserver.federation.room_reads import DEFAULT_MISSING
from homeserver.http.params import get_int, get_str_list, query_int
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)


def _event_ids(values: list[str], name: str) -> list[str]:
    for value in values:
        if not ids.is_valid_event_id(value):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid event id in '{name}'")
    return values


@routes.get("/backfill/{roomId}", auth=Auth.SERVER, prefixes=FED_V1)
async def backfillRoom(req: ApiRequest) -> dict[str, Any]:
    seeds = _event_ids(req.query.getall("v", []), "v")
    if not seeds:
        raise missing_param("Missing required parameter: v")
    limit = query_int(req.query, "limit")
    if limit is None:
        raise missing_param("Missing required parameter: limit")
    if limit < 1:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' must be a positive integer")
    return await req.services.federation_reads.backfill(req.origin, req.path["roomId"], seeds, limit)


@routes.post("/get_missing_events/{roomId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getMissingPreviousEvents(req: ApiRequest) -> dict[str, Any]:
    body = await req.json()
    earliest = _event_ids(get_str_list(body, "earliest_events", required=True), "earliest_events")
    latest = _event_ids(get_str_list(body, "latest_events", required=True), "latest_events")
    limit = get_int(body, "limit", default=DEFAULT_MISSING)
    min_depth = get_int(body, "min_depth", default=0)
    if limit < 0 or min_depth < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' and 'min_depth' must not be negative")
    return await req.services.federation_reads.missing_events(
        req.origin, req.path["roomId"], earliest, latest, limit=limit, min_depth=min_depth
    )
