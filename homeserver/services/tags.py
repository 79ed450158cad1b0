"""Room tags (client-server API "Room Tagging"): the `m.tag` room account data of a user.

`{"tags": {name: {"order": 0.25, ...}}}`; names are at most 255 bytes; `order` (a number, 0 shows
first) is optional. Writes go through account data, so they reach /sync as room account data and
wake the user's long-polls. A per (user, room) lock serialises the read-modify-write.
"""

from __future__ import annotations

import asyncio
from typing import Any
from weakref import WeakValueDictionary

from homeserver.core.errors import MatrixError, forbidden
from homeserver.services.account_data import AccountDataService
from homeserver.state.indexes import MembershipIndex

TAG_TYPE = "m.tag"
MAX_TAG_BYTES = 255


def tags_of(content: dict[str, Any] | None) -> dict[str, Any]:
    tags = content.get("tags") if content else None
    return dict(tags) if isinstance(tags, dict) else {}


class TagService:
    def __init__(self, account_data: AccountDataService, memberships: MembershipIndex) -> None:
        self.account_data = account_data
        self.memberships = memberships
        self._locks: WeakValueDictionary[tuple[str, str], asyncio.Lock] = WeakValueDictionary()

    def _lock(self, user_id: str, room_id: str) -> asyncio.Lock:
        lock = self._locks.get((user_id, room_id))
        if lock is None:
            lock = self._locks[(user_id, room_id)] = asyncio.Lock()
        return lock

    async def get_tags(self, user_id: str, room_id: str) -> dict[str, Any]:
        return tags_of(await self.account_data.get(user_id, room_id, TAG_TYPE))

    async def add_tag(self, user_id: str, room_id: str, tag: str, body: dict[str, Any]) -> None:
        if len(tag.encode("utf-8")) > MAX_TAG_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", f"Tag names are at most {MAX_TAG_BYTES} bytes")
        order = body.get("order")
        if "order" in body and (isinstance(order, bool) or not isinstance(order, int | float)):
            raise MatrixError(400, "M_BAD_JSON", "'order' must be a number")
        # Tagging a room the user has nothing to do with is refused (as Synapse does).
        if room_id not in await self.memberships.load_user(user_id):
            raise forbidden(f"User {user_id} has no membership in room {room_id}")
        async with self._lock(user_id, room_id):
            tags = await self.get_tags(user_id, room_id)
            tags[tag] = body
            await self.account_data.put(user_id, room_id, TAG_TYPE, {"tags": tags}, internal=True)

    async def remove_tag(self, user_id: str, room_id: str, tag: str) -> None:
        async with self._lock(user_id, room_id):
            tags = await self.get_tags(user_id, room_id)
            if tag not in tags:
                return
            del tags[tag]
            await self.account_data.put(user_id, room_id, TAG_TYPE, {"tags": tags}, internal=True)
