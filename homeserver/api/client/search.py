"""Server-side search (search.yaml): POST /search."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.events.filter import parse_room_event_filter
from homeserver.http.params import get_bool, get_dict, get_int, get_list, get_str, get_str_list
from homeserver.http.routing import ApiRequest, Router
from homeserver.services.search import (
    ALL_KEYS,
    DEFAULT_CONTEXT,
    GROUP_KEYS,
    MAX_CONTEXT,
    RoomEventsCriteria,
)

routes = Router()


def _context_limit(context: dict[str, Any], key: str) -> int:
    value = get_int(context, key, default=DEFAULT_CONTEXT)
    if value < 0:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' must not be negative")
    return int(min(value, MAX_CONTEXT))


def parse_room_events(body: dict[str, Any]) -> RoomEventsCriteria:
    search_term = get_str(body, "search_term", required=True)
    keys = get_str_list(body, "keys", default=list(ALL_KEYS))
    order_by = get_str(body, "order_by", default="rank")
    if order_by not in ("rank", "recent"):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid order_by: {order_by!r}")
    group_by: list[str] = []
    groupings = get_dict(body, "groupings", default={})
    for group in get_list(groupings, "group_by", default=[]):
        if not isinstance(group, dict):
            raise MatrixError(400, "M_BAD_JSON", "'group_by' must be an array of objects")
        key = get_str(group, "key", required=True)
        if key not in GROUP_KEYS:
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid group_by key: {key!r}")
        if key not in group_by:
            group_by.append(key)
    context = get_dict(body, "event_context")
    return RoomEventsCriteria(
        search_term=search_term,
        keys=tuple(keys),
        filter=parse_room_event_filter(body.get("filter")),
        order_by=order_by,
        include_state=bool(get_bool(body, "include_state", default=False)),
        group_by=tuple(group_by),
        event_context=context is not None,
        before_limit=_context_limit(context, "before_limit") if context is not None else DEFAULT_CONTEXT,
        after_limit=_context_limit(context, "after_limit") if context is not None else DEFAULT_CONTEXT,
        include_profile=bool(context is not None and get_bool(context, "include_profile", default=False)),
    )


@routes.post("/search")
async def search(req: ApiRequest) -> Any:
    body = await req.json()
    categories = get_dict(body, "search_categories", required=True)
    room_events = get_dict(categories, "room_events")
    if room_events is None:
        return {"search_categories": {}}
    criteria = parse_room_events(room_events)
    return await req.services.search.search(
        req.user.user_id, req.user.device_id, criteria, req.query.get("next_batch") or None
    )
