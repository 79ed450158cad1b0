"""Bulk reads for sliding sync's room lists: a few queries for all of a user's rooms at once."""

from __future__ import annotations

from collections.abc import Collection, Sequence

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

    async def current_state_of_types(
        self, room_ids: Sequence[str], types: Collection[str]
    ) -> list[tuple[str, str, str, str]]:
        """(room_id, type, state_key, event_id) of the current state of `types` in the rooms."""
        type_list = sorted(types)
        out: list[tuple[str, str, str, str]] = []
        for start in range(0, len(room_ids), _CHUNK):
            chunk = list(room_ids[start : start + _CHUNK])
            rooms_sql = _placeholders(1, len(chunk))
            types_sql = _placeholders(len(chunk) + 1, len(type_list))
            rows = await self.db.fetch(
                "SELECT room_id, type, state_key, event_id FROM current_state"
                f" WHERE room_id IN ({rooms_sql}) AND type IN ({types_sql})",
                *chunk,
                *type_list,
            )
            out.extend((r[0], r[1], r[2], r[3]) for r in rows)
        return out
