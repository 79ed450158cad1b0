"""presence: the aggregated presence state of local users, with its `presence` stream position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.core.streams import PresenceStreamRow
from homeserver.storage.database import Database, Row

_COLS = "user_id, state, status_msg, last_active_ts, last_user_sync_ts, currently_active, stream_id"


@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: str
    state: str  # online | unavailable | offline
    status_msg: str | None
    last_active_ts: int
    last_user_sync_ts: int
    currently_active: bool
    stream_id: int


def _row(row: Row) -> PresenceRow:
    return PresenceRow(row[0], row[1], row[2], int(row[3]), int(row[4]), bool(row[5]), int(row[6]))


def _placeholders(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class PresenceStore:
    CHUNK = 500

    def __init__(self, db: Database) -> None:
        self.db = db

    async def rows_since(self, after: int, upto: int, limit: int) -> list[PresenceStreamRow]:
        """Stream rows of the users whose presence changed, as flushed (stream-bus catch-up)."""
        rows = await self.db.fetch(
            "SELECT stream_id, user_id, state FROM presence WHERE stream_id > $1 AND stream_id <= $2"
            " ORDER BY stream_id LIMIT $3",
            after,
            upto,
            limit,
        )
        return [PresenceStreamRow(int(r[0]), r[1], r[2]) for r in rows]

    async def upsert_many(self, rows: Sequence[PresenceRow]) -> None:
        if not rows:
            return
        async with self.db.transaction() as conn:
            await conn.executemany(
                f"INSERT INTO presence ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,"
                " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
                " last_user_sync_ts = excluded.last_user_sync_ts,"
                " currently_active = excluded.currently_active, stream_id = excluded.stream_id"
                " WHERE presence.stream_id <= excluded.stream_id",
                [
                    (
                        r.user_id,
                        r.state,
                        r.status_msg,
                        r.last_active_ts,
                        r.last_user_sync_ts,
                        r.currently_active,
                        r.stream_id,
                    )
                    for r in rows
                ],
            )

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, PresenceRow]:
        result: dict[str, PresenceRow] = {}
        for start in range(0, len(user_ids), self.CHUNK):
            chunk = list(user_ids[start : start + self.CHUNK])
            rows = await self.db.fetch(
                f"SELECT {_COLS} FROM presence WHERE user_id IN ({_placeholders(len(chunk))})", *chunk
            )
            for row in rows:
                found = _row(row)
                result[found.user_id] = found
        return result

    async def list_not_offline(self) -> list[PresenceRow]:
        rows = await self.db.fetch(f"SELECT {_COLS} FROM presence WHERE state <> 'offline'")
        return [_row(r) for r in rows]

    async def users_changed_since(self, after: int) -> list[str]:
        rows = await self.db.fetch("SELECT user_id FROM presence WHERE stream_id > $1", after)
        return [r[0] for r in rows]
