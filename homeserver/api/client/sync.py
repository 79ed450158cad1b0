"""/sync and filters (sync.yaml, filter.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.core.tokens import StreamToken
from homeserver.http.metrics import set_request_tag
from homeserver.http.params import query_bool, query_int
from homeserver.http.routing import ApiRequest, Router
from homeserver.sync.filter import DEFAULT_FILTER, Filter, parse_filter, parse_filter_param
from homeserver.sync.service import SyncRequest

routes = Router()

MAX_TIMEOUT_MS = 5 * 60 * 1000


async def _load_filter(req: ApiRequest, value: str | None) -> Filter:
    if not value:
        return DEFAULT_FILTER
    inline = parse_filter_param(value)
    if inline is not None:
        return parse_filter(inline, errcode="M_INVALID_PARAM")
    try:
        filter_id = int(value)
    except ValueError as exc:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid filter id") from exc
    stored = await req.services.filters.get_filter(req.user.user_id, filter_id)
    if stored is None:
        raise MatrixError(400, "M_INVALID_PARAM", "Unknown filter id")
    return parse_filter(stored)


@routes.get("/sync")
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
        filter=await _load_filter(req, query.get("filter")),
        set_presence=set_presence,
    )
    return await req.services.sync.sync(request)


def _own_user(req: ApiRequest) -> str:
    user_id = req.path["userId"]
    if not ids.is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
    if user_id != req.user.user_id:
        raise forbidden("Cannot access another user's filters")
    return user_id


@routes.post("/user/{userId}/filter")
async def defineFilter(req: ApiRequest) -> Any:
    user_id = _own_user(req)
    body = await req.json(allow_empty=False)
    parse_filter(body)  # validate
    filter_id = await req.services.filters.insert_filter(user_id, body)
    return {"filter_id": str(filter_id)}


@routes.get("/user/{userId}/filter/{filterId}")
async def getFilter(req: ApiRequest) -> Any:
    user_id = _own_user(req)
    try:
        filter_id = int(req.path["filterId"])
    except ValueError as exc:
        raise not_found("No such filter") from exc
    stored = await req.services.filters.get_filter(user_id, filter_id)
    if stored is None:
        raise not_found("No such filter")
    return stored
