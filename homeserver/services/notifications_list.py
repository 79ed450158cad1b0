"""GET /notifications: the requester's notified events, newest first, with their push actions."""

from __future__ import annotations

from typing import Any

from homeserver.http.requester import Requester
from homeserver.services.serialize import EventSerializer
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.push_actions import PushActionStore


class NotificationsListService:
    def __init__(self, store: PushActionStore, events: EventStore, serializer: EventSerializer) -> None:
        self.store = store
        self.events = events
        self.serializer = serializer

    async def list_notifications(
        self, requester: Requester, *, before: int | None, limit: int, only_highlight: bool
    ) -> dict[str, Any]:
        rows = await self.store.list_notifications(requester.user_id, before, limit, only_highlight)
        stored = await self.events.get_events([r.event_id for r in rows])
        chunk = []
        for row in rows:
            event = stored.get(row.event_id)
            if event is None:
                continue
            chunk.append(
                {
                    "actions": row.actions,
                    "event": await self.serializer.serialize_one(event),
                    "read": row.read,
                    "room_id": row.room_id,
                    "ts": row.created_ts,
                }
            )
        body: dict[str, Any] = {"notifications": chunk}
        if len(rows) == limit:
            body["next_token"] = str(rows[-1].stream_ordering)
        return body
