"""appservice_positions, appservice_txns: the persisted part of pushing events to appservices.

Per appservice one row of positions (events and to-device streams covered by transactions, last
transaction id) and the transactions built but not yet acknowledged. `create_txn` writes a
transaction and the positions it covers in one database transaction: after a crash either both
exist or neither, so nothing is lost and nothing is sent twice under two ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core import json as hjson
from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class AppServicePositions:
    events_position: int
    to_device_position: int
    last_txn_id: int


@dataclass(frozen=True, slots=True)
class PendingTxn:
    as_id: str
    txn_id: int
    content: dict[str, Any]
    event_count: int
    created_ts: int


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """A to-device message waiting in device_inbox (read for appservice users)."""

    stream_id: int
    user_id: str
    device_id: str
    sender: str
    type: str
    content: dict[str, Any]


class AppServiceTxnStore:
    CHUNK = 500  # ids per IN (...) list

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_positions(self, as_id: str) -> AppServicePositions | None:
        row = await self.db.fetchrow(
            "SELECT events_position, to_device_position, last_txn_id FROM appservice_positions"
            " WHERE as_id = $1",
            as_id,
        )
        return AppServicePositions(int(row[0]), int(row[1]), int(row[2])) if row is not None else None

    async def insert_positions(self, as_id: str, events_position: int, to_device_position: int) -> None:
        """The starting point of a newly registered appservice (no history is replayed to it)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO appservice_positions (as_id, events_position, to_device_position, last_txn_id)"
                " VALUES ($1, $2, $3, 0) ON CONFLICT (as_id) DO NOTHING",
                as_id,
                events_position,
                to_device_position,
            )

    async def update_positions(self, as_id: str, events_position: int, to_device_position: int) -> None:
        """Move past stream ranges that held nothing for the appservice (no transaction needed)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE appservice_positions SET events_position = $2, to_device_position = $3"
                " WHERE as_id = $1",
                as_id,
                events_position,
                to_device_position,
            )

    async def list_pending_txns(self, as_id: str) -> list[PendingTxn]:
        rows = await self.db.fetch(
            "SELECT as_id, txn_id, content, event_count, created_ts FROM appservice_txns"
            " WHERE as_id = $1 ORDER BY txn_id",
            as_id,
        )
        return [PendingTxn(r[0], int(r[1]), hjson.loads(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def create_txn(
        self,
        as_id: str,
        content: dict[str, Any],
        event_count: int,
        *,
        events_position: int,
        to_device_position: int,
        now: int,
    ) -> PendingTxn:
        """The next transaction id of the appservice, stored with its content and the new positions."""
        async with self.db.transaction() as conn:
            last = await conn.fetchval("SELECT last_txn_id FROM appservice_positions WHERE as_id = $1", as_id)
            if last is None:
                raise LookupError(f"no positions for appservice {as_id}")
            txn_id = int(last) + 1
            await conn.execute(
                "UPDATE appservice_positions SET last_txn_id = $2, events_position = $3,"
                " to_device_position = $4 WHERE as_id = $1",
                as_id,
                txn_id,
                events_position,
                to_device_position,
            )
            await conn.execute(
                "INSERT INTO appservice_txns (as_id, txn_id, content, event_count, created_ts)"
                " VALUES ($1, $2, $3, $4, $5)",
                as_id,
                txn_id,
                hjson.dumps_str(content),
                event_count,
                now,
            )
        return PendingTxn(as_id, txn_id, content, event_count, now)

    async def delete_txn(self, as_id: str, txn_id: int) -> None:
        """The appservice acknowledged the transaction."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM appservice_txns WHERE as_id = $1 AND txn_id = $2", as_id, txn_id)

    async def list_inbox_after(self, after: int, upto: int, limit: int) -> list[InboxMessage]:
        """To-device messages of any user with after < stream_id <= upto, oldest first (the caller
        keeps those of appservice users; the range is usually one announcement's worth)."""
        rows = await self.db.fetch(
            "SELECT stream_id, user_id, device_id, sender, type, content FROM device_inbox"
            " WHERE stream_id > $1 AND stream_id <= $2 ORDER BY stream_id LIMIT $3",
            after,
            upto,
            limit,
        )
        return [InboxMessage(int(r[0]), r[1], r[2], r[3], r[4], hjson.loads(r[5])) for r in rows]

    async def key_counts(
        self, user_ids: Sequence[str]
    ) -> tuple[dict[str, dict[str, dict[str, int]]], dict[str, dict[str, list[str]]]]:
        """MSC3202 for appservice users: one-time key counts per algorithm for every device of the
        users (`signed_curve25519` always present, as Synapse), and unused fallback key types."""
        counts: dict[str, dict[str, dict[str, int]]] = {}
        fallback: dict[str, dict[str, list[str]]] = {}
        for start in range(0, len(user_ids), self.CHUNK):
            chunk = list(user_ids[start : start + self.CHUNK])
            marks = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            for user_id, device_id in await self.db.fetch(
                f"SELECT user_id, device_id FROM devices WHERE user_id IN ({marks})", *chunk
            ):
                counts.setdefault(user_id, {})[device_id] = {"signed_curve25519": 0}
            for user_id, device_id, algorithm, n in await self.db.fetch(
                "SELECT user_id, device_id, algorithm, COUNT(*) FROM e2e_one_time_keys"
                f" WHERE user_id IN ({marks}) GROUP BY user_id, device_id, algorithm",
                *chunk,
            ):
                per_device = counts.setdefault(user_id, {}).setdefault(device_id, {"signed_curve25519": 0})
                per_device[algorithm] = int(n)
            for user_id, device_id, algorithm in await self.db.fetch(
                "SELECT user_id, device_id, algorithm FROM e2e_fallback_keys"
                f" WHERE user_id IN ({marks}) AND used = FALSE ORDER BY algorithm",
                *chunk,
            ):
                fallback.setdefault(user_id, {}).setdefault(device_id, []).append(algorithm)
        return counts, fallback
