"""Account data (global and per room): writes advance the account_data stream; the row on the bus
wakes the user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.core.streams import AccountDataRow, Stream
from homeserver.replication.bus import StreamBus
from homeserver.storage.stores.account_data import AccountDataStore
from homeserver.storage.streams import StreamIdGenerator

# Types the server manages itself through other endpoints.
SERVER_MANAGED = {"m.fully_read", "m.push_rules"}


class AccountDataService:
    def __init__(self, store: AccountDataStore, stream: StreamIdGenerator, bus: StreamBus) -> None:
        self.store = store
        self.stream = stream
        self.bus = bus
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
        # Publish (and so wake) only once readers can see it: with an earlier write still in
        # flight the stream's position does not include this one yet (StreamIdGenerator.when_visible).
        rows = [AccountDataRow(stream_id, user_id, room_id, type)]
        self.stream.when_visible(
            stream_id, lambda: self.bus.publish(Stream.ACCOUNT_DATA, self.stream.current, rows)
        )
        return stream_id
