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
    services = req.services
    rows = await services.notifications.store.list_notifications(
        req.user.user_id, before, limit, only_highlight=(only == "highlight")
    )
    stored = await services.events.get_events([r.event_id for r in rows])
    chunk = []
    for row in rows:
        event = stored.get(row.event_id)
        if event is None:
            continue
        chunk.append(
            {
                "actions": row.actions,
                "event": await services.serializer.serialize_one(event),
                "read": row.read,
                "room_id": row.room_id,
                "ts": row.created_ts,
            }
        )
    body: dict[str, Any] = {"notifications": chunk}
    if len(rows) == limit:
        body["next_token"] = str(rows[-1].stream_ordering)
    return body
