"""GET /notifications (notifications.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.http.params import parse_int64, query_int
from homeserver.http.routing import ApiRequest, Router

routes = Router()


@routes.get("/notifications")
async def getNotifications(req: ApiRequest) -> Any:
    raw_from = req.query.get("from")
    before = parse_int64(raw_from, "'from' token") if raw_from else None
    limit = query_int(req.query, "limit", 20, minimum=1, maximum=100) or 20
    only = req.query.get("only")
    return await req.services.notifications_list.list_notifications(
        req.user, before=before, limit=limit, only_highlight=(only == "highlight")
    )
