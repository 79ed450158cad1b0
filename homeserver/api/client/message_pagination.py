"""Room history pagination (message_pagination.yaml), plus the query parsing the other timeline
routes (event_context, relations, threads_list, room_event_by_timestamp) share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.events.filter import RoomEventFilter
from homeserver.http.params import query_int
from homeserver.http.routing import ApiRequest, Router
from homeserver.services.timeline import DEFAULT_LIMIT, MAX_LIMIT

routes = Router()


def room_id_param(req: ApiRequest) -> str:
    room_id = req.path["roomId"]
    if not ids.is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room id {room_id!r}")
    return room_id


def direction_param(query: Mapping[str, str], *, required: bool = False) -> bool:
    """The `dir` query parameter as "backwards?" (`b` when absent, unless required)."""
    value = query.get("dir")
    if value is None or value == "":
        if required:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter 'dir'")
        return True
    if value not in ("b", "f"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'dir' must be 'b' or 'f'")
    return value == "b"


async def room_event_filter_param(req: ApiRequest) -> RoomEventFilter:
    """The `filter` query parameter: an inline RoomEventFilter, or the id of a filter the user
    uploaded (its room timeline filter is used)."""
    return await req.services.filters.room_event_filter(req.user, req.query.get("filter"))


@routes.get("/rooms/{roomId}/messages")
async def getRoomEvents(req: ApiRequest) -> Any:
    room_id = room_id_param(req)
    query = req.query
    backwards = direction_param(query, required=True)  # the spec makes dir required
    limit = query_int(query, "limit", DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT) or 0
    flt = await room_event_filter_param(req)
    return await req.services.timeline.get_messages(
        req.user.user_id,
        req.user.device_id,
        room_id,
        from_token=query.get("from") or None,
        to_token=query.get("to") or None,
        backwards=backwards,
        limit=limit,
        flt=flt,
        backfill=True,
    )
