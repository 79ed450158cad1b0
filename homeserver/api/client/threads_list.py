"""The thread roots of a room (threads_list.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.api.client.message_pagination import room_id_param
from homeserver.core.errors import MatrixError
from homeserver.http.params import query_int
from homeserver.http.routing import CLIENT_V1, ApiRequest, Router
from homeserver.services.timeline import THREADS_DEFAULT_LIMIT, THREADS_MAX_LIMIT

routes = Router()


@routes.get("/rooms/{roomId}/threads", prefixes=CLIENT_V1)
async def getThreadRoots(req: ApiRequest) -> Any:
    room_id = room_id_param(req)
    query = req.query
    include = query.get("include") or "all"
    if include not in ("all", "participated"):
        raise MatrixError(400, "M_INVALID_PARAM", "include must be 'all' or 'participated'")
    limit = query_int(query, "limit", THREADS_DEFAULT_LIMIT, maximum=THREADS_MAX_LIMIT)
    if limit is None or limit < 1:
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be an integer greater than zero")
    return await req.services.timeline.get_threads(
        req.user.user_id,
        req.user.device_id,
        room_id,
        participated_only=include == "participated",
        from_token=query.get("from") or None,
        limit=limit,
    )
