"""receipts: the latest read receipt per (room, receipt type, user, thread)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.core.streams import ReceiptRow
from homeserver.storage.database import Database, Row

PRIVATE = "m.read.private"
_COLS = "room_id, receipt_type, user_id, thread_id, event_id, event_stream_ordering, ts, stream_id"


@dataclass(frozen=True, slots=True)
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None  # None: unthreaded
    event_id: str
    event_stream_ordering: int
    ts: int
    stream_id: int

    @property
    def key(self) -> tuple[str, str, str]:
        """What a newer receipt replaces: (receipt type, user, thread or '')."""
        return self.receipt_type, self.user_id, self.thread_id or ""


def _receipt(row: Row) -> Receipt:
    return Receipt(row[0], row[1], row[2], row[3] or None, row[4], int(row[5]), int(row[6]), int(row[7]))


def _placeholders(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class ReceiptStore:
    CHUNK = 500

    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert_forward(self, receipt: Receipt) -> bool:
        """Store the receipt unless the stored one for the same key is at or after its event.

        One statement, so concurrent writers cannot move a receipt backwards. True when stored.
        """
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                f"INSERT INTO receipts ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
                " event_id = excluded.event_id, event_stream_ordering = excluded.event_stream_ordering,"
                " ts = excluded.ts, stream_id = excluded.stream_id"
                " WHERE receipts.event_stream_ordering < excluded.event_stream_ordering"
                " RETURNING stream_id",
                receipt.room_id,
                receipt.receipt_type,
                receipt.user_id,
                receipt.thread_id or "",
                receipt.event_id,
                receipt.event_stream_ordering,
                receipt.ts,
                receipt.stream_id,
            )
        return row is not None

    async def rows_since(self, after: int, upto: int, limit: int) -> list[ReceiptRow]:
        """Stream rows of the receipts that moved (stream-bus catch-up)."""
        rows = await self.db.fetch(
            f"SELECT {_COLS} FROM receipts WHERE stream_id > $1 AND stream_id <= $2"
            " ORDER BY stream_id LIMIT $3",
            after,
            upto,
            limit,
        )
        result = []
        for r in map(_receipt, rows):
            private = r.receipt_type == PRIVATE
            result.append(
                ReceiptRow(
                    r.stream_id, r.room_id, r.receipt_type, r.user_id, r.event_id, r.thread_id, private
                )
            )
        return result

    async def get_receipt(
        self, room_id: str, receipt_type: str, user_id: str, thread_id: str | None
    ) -> Receipt | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLS} FROM receipts WHERE room_id = $1 AND receipt_type = $2 AND user_id = $3"
            " AND thread_id = $4",
            room_id,
            receipt_type,
            user_id,
            thread_id or "",
        )
        return _receipt(row) if row is not None else None

    async def list_room(self, room_id: str) -> list[Receipt]:
        rows = await self.db.fetch(f"SELECT {_COLS} FROM receipts WHERE room_id = $1", room_id)
        return [_receipt(r) for r in rows]

    async def list_rooms(self, room_ids: Sequence[str]) -> dict[str, list[Receipt]]:
        """Every receipt of the given rooms (rooms without any map to an empty list)."""
        result: dict[str, list[Receipt]] = {room_id: [] for room_id in room_ids}
        for start in range(0, len(room_ids), self.CHUNK):
            chunk = list(room_ids[start : start + self.CHUNK])
            rows = await self.db.fetch(
                f"SELECT {_COLS} FROM receipts WHERE room_id IN ({_placeholders(len(chunk))})", *chunk
            )
            for row in rows:
                receipt = _receipt(row)
                result[receipt.room_id].append(receipt)
        return result

    async def list_user_receipts(self, user_id: str, room_id: str) -> list[Receipt]:
        """The user's own receipts in a room (all types and threads)."""
        rows = await self.db.fetch(
            f"SELECT {_COLS} FROM receipts WHERE user_id = $1 AND room_id = $2", user_id, room_id
        )
        return [_receipt(r) for r in rows]

    async def rooms_changed_since(self, after: int, user_id: str) -> set[str]:
        """Rooms with a receipt newer than `after` that `user_id` may see (public ones, own private)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id FROM receipts WHERE stream_id > $1"
            " AND (receipt_type <> $2 OR user_id = $3)",
            after,
            PRIVATE,
            user_id,
        )
        return {r[0] for r in rows}
