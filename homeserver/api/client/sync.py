"""/sync and filters (sync.yaml, filter.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.core.tokens import StreamToken
from homeserver.http.metrics import set_request_tag
from homeserver.http.params import query_bool, query_int
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.http.websocket import protocol as ws_protocol
from homeserver.http.websocket.connection import serve_sync_websocket
from homeserver.sync.service import SyncRequest

routes = Router()

MAX_TIMEOUT_MS = 5 * 60 * 1000


async def sync_websocket(req: ApiRequest) -> Any:
    """/sync upgraded to a WebSocket (docs/websocket.md); it authenticates by itself."""
    return await serve_sync_websocket(req.raw, req.services)


@routes.get("/sync", auth=Auth.NONE, prefixes=(ws_protocol.UNSTABLE_PREFIX,), websocket=sync_websocket)
async def sync_websocket_only(req: ApiRequest) -> Any:
    raise MatrixError(400, "M_UNRECOGNIZED", "This endpoint serves WebSocket upgrades only")


@routes.get("/sync", websocket=sync_websocket)
async def sync(req: ApiRequest) -> Any:
    query = req.query
    since_raw = query.get("since")
    since = StreamToken.parse(since_raw) if since_raw else None
    timeout = query_int(query, "timeout", 0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0
    set_presence = query.get("set_presence")
    if set_presence is not None and set_presence not in ("offline", "online", "unavailable"):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid set_presence")
    set_request_tag(
        "initial_sync"
        if since is None
        else "full_state_sync"
        if query_bool(query, "full_state")
        else "incremental_sync"
    )
    request = SyncRequest(
        user_id=req.user.user_id,
        device_id=req.user.device_id,
        since=since,
        timeout_ms=timeout,
        full_state=query_bool(query, "full_state"),
        filter=await req.services.filters.sync_filter(req.user, query.get("filter")),
        set_presence=set_presence,
        filter_key=query.get("filter") or "",
    )
    return await req.services.sync.sync(request)


def _user_param(req: ApiRequest) -> str:
    user_id = req.path["userId"]
    if not ids.is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
    return user_id


@routes.post("/user/{userId}/filter")
async def defineFilter(req: ApiRequest) -> Any:
    user_id = _user_param(req)
    req.services.filters.check_owner(req.user, user_id)  # 403 before any body error, as Synapse
    body = await req.json(allow_empty=False)
    return {"filter_id": await req.services.filters.define(req.user, user_id, body)}


@routes.get("/user/{userId}/filter/{filterId}")
async def getFilter(req: ApiRequest) -> Any:
    return await req.services.filters.get(req.user, _user_param(req), req.path["filterId"])
