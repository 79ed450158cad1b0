"""GET /notifications (notifications.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.params import query_int
from homeserver.http.routing import ApiRequest, Router

routes = Router()


@routes.get("/notifications")
async def getNotifications(req: ApiRequest) -> Any:
    raw_from = req.query.get("from")
    before = None
    if raw_from:
        try:
            before = int(raw_from)
        except ValueError as exc:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid 'from' token") from exc
    limit = query_int(req.query, "limit", 20, minimum=1, maximum=100) or 20
    only = req.query.get("only")
    return await req.services.notifications_list.list_notifications(
        req.user, before=before, limit=limit, only_highlight=(only == "highlight")
    )
