"""Reads of the event DAG for the federation read endpoints (/backfill, /get_missing_events,
/event, /state, /timestamp_to_event): what kind of event each one is, and its prev_events with the
facts a walk needs, without loading the events themselves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Row


@dataclass(frozen=True, slots=True)
class EventMeta:
    event_id: str
    room_id: str
    depth: int
    stream_ordering: int
    origin_server_ts: int
    outlier: bool
    rejected: bool
    soft_failed: bool


_META = (
    "SELECT event_id, room_id, depth, stream_ordering, origin_server_ts, outlier,"
    " rejected_reason, soft_failed FROM events"
)


def _meta(row: Row) -> EventMeta:
    return EventMeta(
        str(row[0]),
        str(row[1]),
        int(row[2]),
        int(row[3]),
        int(row[4]),
        bool(row[5]),
        row[6] is not None,
        bool(row[7]),
    )


class DagStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_meta(self, event_ids: Sequence[str]) -> dict[str, EventMeta]:
        """The kind and position of each known event among `event_ids`."""
        result: dict[str, EventMeta] = {}
        unique = list(dict.fromkeys(event_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            placeholders = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            rows = await self.db.fetch(f"{_META} WHERE event_id IN ({placeholders})", *chunk)
            for row in rows:
                meta = _meta(row)
                result[meta.event_id] = meta
        return result

    async def list_prev_meta(self, event_id: str, limit: int) -> list[EventMeta]:
        """The known prev_events of `event_id` (outliers excluded: no place in the DAG), deepest
        first, at most `limit`."""
        rows = await self.db.fetch(
            "SELECT e.event_id, e.room_id, e.depth, e.stream_ordering, e.origin_server_ts, e.outlier,"
            " e.rejected_reason, e.soft_failed FROM event_edges g JOIN events e"
            " ON e.event_id = g.prev_event_id WHERE g.event_id = $1 AND NOT e.outlier"
            " ORDER BY e.depth DESC, e.stream_ordering DESC LIMIT $2",
            event_id,
            limit,
        )
        return [_meta(r) for r in rows]
