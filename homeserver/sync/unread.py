"""Unread notification counts in /sync (`unread_notifications`, `unread_thread_notifications`)."""

from __future__ import annotations

from typing import Any

from homeserver.core.tokens import StreamToken
from homeserver.services.notifications import MAIN_THREAD, NotificationService
from homeserver.sync.service import SyncExtension, SyncRequest

# An incremental sync touching fewer rooms than this reads their counts one by one (a user's
# whole unread set can be larger than a few rooms' rows).
WARM_MIN_ROOMS = 10


class UnreadCountsExtension(SyncExtension):
    def __init__(self, notifications: NotificationService) -> None:
        self.notifications = notifications

    async def prepare_rooms(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken, room_ids: list[str]
    ) -> None:
        # One query for all rooms of an initial (or wide) sync instead of one per room.
        if since is None or len(room_ids) >= WARM_MIN_ROOMS:
            await self.notifications.warm(req.user_id, room_ids)

    async def room_part(
        self,
        req: SyncRequest,
        room_id: str,
        since: StreamToken | None,
        now: StreamToken,
        room: dict[str, Any],
    ) -> None:
        counts = await self.notifications.room_counts(req.user_id, room_id)
        per_thread = req.filter.unread_thread_notifications
        main = {"notification_count": 0, "highlight_count": 0}
        threads: dict[str, dict[str, int]] = {}
        for count in counts:
            if per_thread and count.thread_id != MAIN_THREAD:
                threads[count.thread_id] = {
                    "notification_count": count.notifications,
                    "highlight_count": count.highlights,
                }
            else:
                main["notification_count"] += count.notifications
                main["highlight_count"] += count.highlights
        room["unread_notifications"] = main
        if per_thread and threads:
            room["unread_thread_notifications"] = threads


async def unread_totals(notifications: NotificationService, user_id: str, room_id: str) -> tuple[int, int]:
    """(notification_count, highlight_count) of a room over all its threads (sliding sync)."""
    notified = highlighted = 0
    for count in await notifications.room_counts(user_id, room_id):
        notified += count.notifications
        highlighted += count.highlights
    return notified, highlighted
