"""Account data (global and per room): writes advance the account_data stream and wake the user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.notifier.notifier import Notifier
from homeserver.storage.stores.account_data import AccountDataStore
from homeserver.storage.streams import StreamIdGenerator

# Types the server manages itself through other endpoints.
SERVER_MANAGED = {"m.fully_read", "m.push_rules"}


class AccountDataService:
    def __init__(self, store: AccountDataStore, stream: StreamIdGenerator, notifier: Notifier) -> None:
        self.store = store
        self.stream = stream
        self.notifier = notifier
        # (user_id, room_id, type, content) after each write (e.g. the ignore list cache)
        self.put_hooks: list[Callable[[str, str, str, dict[str, Any]], None]] = []

    async def get(self, user_id: str, room_id: str, type: str) -> dict[str, Any] | None:
        return await self.store.get(user_id, room_id, type)

    async def put(
        self, user_id: str, room_id: str, type: str, content: dict[str, Any], *, internal: bool = False
    ) -> int:
        if not internal and type in SERVER_MANAGED:
            raise MatrixError(
                405, "M_BAD_JSON", f"Cannot set {type} through this API. Use the dedicated endpoint."
            )
        async with self.stream.next() as stream_id:
            await self.store.upsert(user_id, room_id, type, content, stream_id)
            for hook in self.put_hooks:
                hook(user_id, room_id, type, content)
        # Wake once readers can see it (not while an earlier write is in flight).
        self.stream.when_visible(
            stream_id, lambda: self.notifier.on_user_event("account_data", self.stream.current, [user_id])
        )
        return stream_id
