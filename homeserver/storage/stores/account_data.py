"""account_data: global (room_id '') and per-room account data, with a stream position each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.core.json import dumps_str, loads
from homeserver.core.streams import AccountDataRow
from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class AccountDataItem:
    room_id: str  # '' for global
    type: str
    content: dict[str, Any]
    stream_id: int


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str, room_id: str, type: str) -> dict[str, Any] | None:
        text = await self.db.fetchval(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            user_id,
            room_id,
            type,
        )
        return loads(text) if text is not None else None

    async def upsert(
        self, user_id: str, room_id: str, type: str, content: dict[str, Any], stream_id: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content,"
            " stream_id = excluded.stream_id",
            user_id,
            room_id,
            type,
            dumps_str(content),
            stream_id,
        )

    async def rows_since(self, after: int, upto: int, limit: int) -> list[AccountDataRow]:
        """Stream rows of every user's latest changes (stream-bus catch-up)."""
        rows = await self.db.fetch(
            "SELECT stream_id, user_id, room_id, type FROM account_data WHERE stream_id > $1"
            " AND stream_id <= $2 ORDER BY stream_id LIMIT $3",
            after,
            upto,
            limit,
        )
        return [AccountDataRow(int(r[0]), r[1], r[2], r[3]) for r in rows]

    async def list_since(self, user_id: str, after: int, upto: int) -> list[AccountDataItem]:
        rows = await self.db.fetch(
            "SELECT room_id, type, content, stream_id FROM account_data WHERE user_id = $1"
            " AND stream_id > $2 AND stream_id <= $3 ORDER BY stream_id",
            user_id,
            after,
            upto,
        )
        return [AccountDataItem(r[0], r[1], loads(r[2]), int(r[3])) for r in rows]
