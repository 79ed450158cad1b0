"""Bulk reads for sliding sync's room lists: a few queries for all of a user's rooms at once."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from homeserver.core.json import loads
from homeserver.storage.database import Database

_CHUNK = 400


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class SlidingSyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def bump_stamps(self, room_ids: Sequence[str], types: Collection[str]) -> dict[str, int]:
        """Stream ordering of each room's newest accepted event of one of `types`."""
        type_list = sorted(types)
        result: dict[str, int] = {}
        for start in range(0, len(room_ids), _CHUNK):
            chunk = list(room_ids[start : start + _CHUNK])
            rooms_sql = _placeholders(1, len(chunk))
            types_sql = _placeholders(len(chunk) + 1, len(type_list))
            rows = await self.db.fetch(
                "SELECT room_id, MAX(stream_ordering) FROM events"
                f" WHERE room_id IN ({rooms_sql}) AND type IN ({types_sql})"
                " AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed GROUP BY room_id",
                *chunk,
                *type_list,
            )
            for row in rows:
                result[row[0]] = int(row[1])
        return result

    async def current_state_contents(
        self, room_ids: Sequence[str], types: Collection[str]
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(room_id, type, content) of the current state events with an empty state key of
        `types` in the rooms (content only: no event objects are built for a summary row)."""
        type_list = sorted(types)
        out: list[tuple[str, str, dict[str, Any]]] = []
        for start in range(0, len(room_ids), _CHUNK):
            chunk = list(room_ids[start : start + _CHUNK])
            rooms_sql = _placeholders(1, len(chunk))
            types_sql = _placeholders(len(chunk) + 1, len(type_list))
            rows = await self.db.fetch(
                "SELECT cs.room_id, cs.type, e.json, e.redacted_by FROM current_state cs"
                " JOIN events e ON e.event_id = cs.event_id"
                f" WHERE cs.room_id IN ({rooms_sql}) AND cs.type IN ({types_sql}) AND cs.state_key = ''",
                *chunk,
                *type_list,
            )
            for room_id, ev_type, raw, redacted_by in rows:
                # A redacted name or avatar has no content left (the create event keeps its own).
                content = {} if redacted_by and ev_type != "m.room.create" else loads(raw).get("content")
                out.append((room_id, ev_type, content if isinstance(content, dict) else {}))
        return out

    # -- connection positions (homeserver/sync/sliding/connections.py) --------------------------

    async def insert_position(
        self,
        position: int,
        user_id: str,
        device_id: str,
        conn_id: str,
        parent: int,
        state: str,
        created_ts: int,
        keep: int,
    ) -> None:
        """Record a position; keep only the connection's newest `keep` ones."""
        async with self.db.transaction("sliding_sync_insert_position") as conn:
            await conn.execute(
                "INSERT INTO sliding_sync_positions"
                " (position, user_id, device_id, conn_id, parent, state, created_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (position) DO NOTHING",
                position,
                user_id,
                device_id,
                conn_id,
                parent,
                state,
                created_ts,
            )
            await conn.execute(
                "DELETE FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2"
                " AND conn_id = $3 AND position NOT IN (SELECT position FROM sliding_sync_positions"
                " WHERE user_id = $1 AND device_id = $2 AND conn_id = $3"
                " ORDER BY position DESC LIMIT $4)",
                user_id,
                device_id,
                conn_id,
                keep,
            )

    async def load_position(
        self, position: int, user_id: str, device_id: str, conn_id: str
    ) -> tuple[int, str] | None:
        row = await self.db.fetchrow(
            "SELECT parent, state FROM sliding_sync_positions WHERE position = $1 AND user_id = $2"
            " AND device_id = $3 AND conn_id = $4",
            position,
            user_id,
            device_id,
            conn_id,
        )
        return (int(row[0]), row[1]) if row is not None else None

    async def delete_positions_before(
        self, position: int, user_id: str, device_id: str, conn_id: str
    ) -> None:
        await self.db.execute(
            "DELETE FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 AND conn_id = $3"
            " AND position < $4",
            user_id,
            device_id,
            conn_id,
            position,
        )

    async def delete_connection(self, user_id: str, device_id: str, conn_id: str) -> None:
        await self.db.execute(
            "DELETE FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
            user_id,
            device_id,
            conn_id,
        )

    async def delete_device_connections(self, user_id: str, device_ids: list[str]) -> None:
        async with self.db.transaction("sliding_sync_delete_devices") as conn:
            for device_id in device_ids:
                await conn.execute(
                    "DELETE FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2",
                    user_id,
                    device_id,
                )
