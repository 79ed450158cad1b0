"""The outbound federation queues (schema/0025): queued PDUs and EDUs per destination, the
transaction in flight, catch-up bookkeeping and the sender's stream positions; the outbox
(schema/0037) main writes to when a worker sends."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Connection, Database


@dataclass(frozen=True, slots=True)
class QueuedPdu:
    stream_ordering: int
    room_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class QueuedEdu:
    seq: int
    edu_type: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxEdu:
    id: int
    destination: str
    edu_type: str
    key: str | None
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InFlightTxn:
    txn_id: str
    body: dict[str, Any]
    pdu_orderings: tuple[int, ...]
    edu_seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DestinationQueueState:
    destination: str
    last_successful_stream_ordering: int | None
    catching_up: bool
    txn_seq: int
    in_flight: InFlightTxn | None


@dataclass(frozen=True, slots=True)
class PendingCounts:
    pdus: int
    edus: int


def _placeholders(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class FederationQueueStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- stream positions ------------------------------------------------------------------------

    async def get_position(self, stream: str) -> int | None:
        value = await self.db.fetchval(
            "SELECT position FROM federation_stream_positions WHERE stream = $1", stream
        )
        return int(value) if value is not None else None

    async def set_position_txn(self, conn: Connection, stream: str, position: int) -> None:
        await conn.execute(
            "INSERT INTO federation_stream_positions (stream, position) VALUES ($1, $2)"
            " ON CONFLICT (stream) DO UPDATE SET position = CASE"
            " WHEN excluded.position > federation_stream_positions.position THEN excluded.position"
            " ELSE federation_stream_positions.position END",
            stream,
            position,
        )

    # -- destinations ----------------------------------------------------------------------------

    async def _ensure_txn(self, conn: Connection, destination: str) -> None:
        await conn.execute(
            "INSERT INTO federation_destination_queues (destination) VALUES ($1)"
            " ON CONFLICT (destination) DO NOTHING",
            destination,
        )

    async def get_state(self, destination: str) -> DestinationQueueState:
        row = await self.db.fetchrow(
            "SELECT last_successful_stream_ordering, catching_up, txn_seq, txn_id, txn_body, txn_pdus,"
            " txn_edus FROM federation_destination_queues WHERE destination = $1",
            destination,
        )
        if row is None:
            return DestinationQueueState(destination, None, False, 0, None)
        in_flight = None
        if row[3] is not None:
            in_flight = InFlightTxn(
                row[3],
                json.loads(row[4]),
                tuple(json.loads(row[5] or "[]")),
                tuple(json.loads(row[6] or "[]")),
            )
        return DestinationQueueState(
            destination, int(row[0]) if row[0] is not None else None, bool(row[1]), int(row[2]), in_flight
        )

    async def list_destinations_with_work(self) -> list[str]:
        """Destinations with queued PDUs or EDUs, a transaction in flight, or catch-up to do."""
        rows = await self.db.fetch(
            "SELECT destination FROM federation_pdu_queue"
            " UNION SELECT destination FROM federation_edu_queue"
            " UNION SELECT destination FROM federation_destination_queues"
            " WHERE txn_id IS NOT NULL OR catching_up"
        )
        return sorted(r[0] for r in rows)

    async def list_destinations(self) -> list[str]:
        rows = await self.db.fetch(
            "SELECT destination FROM federation_destination_queues"
            " UNION SELECT destination FROM federation_destination_rooms"
        )
        return sorted(r[0] for r in rows)

    async def pending_counts(self) -> dict[str, PendingCounts]:
        pdus = await self.db.fetch(
            "SELECT destination, COUNT(*) FROM federation_pdu_queue GROUP BY destination"
        )
        edus = await self.db.fetch(
            "SELECT destination, COUNT(*) FROM federation_edu_queue GROUP BY destination"
        )
        counts: dict[str, list[int]] = {}
        for r in pdus:
            counts.setdefault(r[0], [0, 0])[0] = int(r[1])
        for r in edus:
            counts.setdefault(r[0], [0, 0])[1] = int(r[1])
        return {d: PendingCounts(p, e) for d, (p, e) in counts.items()}

    async def pending_for(self, destination: str) -> PendingCounts:
        pdus = await self.db.fetchval(
            "SELECT COUNT(*) FROM federation_pdu_queue WHERE destination = $1", destination
        )
        edus = await self.db.fetchval(
            "SELECT COUNT(*) FROM federation_edu_queue WHERE destination = $1", destination
        )
        return PendingCounts(int(pdus), int(edus))

    # -- PDUs ------------------------------------------------------------------------------------

    async def count_pdus_txn(self, conn: Connection, destination: str) -> int:
        return int(
            await conn.fetchval(
                "SELECT COUNT(*) FROM federation_pdu_queue WHERE destination = $1", destination
            )
        )

    async def is_catching_up_txn(self, conn: Connection, destination: str) -> bool:
        value = await conn.fetchval(
            "SELECT catching_up FROM federation_destination_queues WHERE destination = $1", destination
        )
        return bool(value)

    async def queue_pdu_txn(self, conn: Connection, destination: str, pdu: QueuedPdu, *, queue: bool) -> None:
        """Record that `pdu` is meant for `destination`; with `queue`, also queue it for sending."""
        await conn.execute(
            "INSERT INTO federation_destination_rooms (destination, room_id, stream_ordering, event_id)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (destination, room_id) DO UPDATE"
            " SET stream_ordering = excluded.stream_ordering, event_id = excluded.event_id",
            destination,
            pdu.room_id,
            pdu.stream_ordering,
            pdu.event_id,
        )
        if queue:
            await conn.execute(
                "INSERT INTO federation_pdu_queue (destination, stream_ordering, room_id, event_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (destination, stream_ordering) DO NOTHING",
                destination,
                pdu.stream_ordering,
                pdu.room_id,
                pdu.event_id,
            )

    async def start_catch_up_txn(self, conn: Connection, destination: str) -> None:
        """Drop the destination's queued PDUs: catch-up will send the rooms' latest events instead."""
        await self._ensure_txn(conn, destination)
        await conn.execute("DELETE FROM federation_pdu_queue WHERE destination = $1", destination)
        await conn.execute(
            "UPDATE federation_destination_queues SET catching_up = $2 WHERE destination = $1",
            destination,
            True,
        )

    async def start_catch_up(self, destination: str) -> None:
        async with self.db.transaction() as conn:
            await self.start_catch_up_txn(conn, destination)

    async def list_pdus(self, destination: str, limit: int) -> list[QueuedPdu]:
        rows = await self.db.fetch(
            "SELECT stream_ordering, room_id, event_id FROM federation_pdu_queue WHERE destination = $1"
            " ORDER BY stream_ordering LIMIT $2",
            destination,
            limit,
        )
        return [QueuedPdu(int(r[0]), r[1], r[2]) for r in rows]

    async def list_catch_up_rooms(self, destination: str, after: int, limit: int) -> list[QueuedPdu]:
        """The latest event of each room with events for `destination` after `after`, oldest first."""
        rows = await self.db.fetch(
            "SELECT stream_ordering, room_id, event_id FROM federation_destination_rooms"
            " WHERE destination = $1 AND stream_ordering > $2 ORDER BY stream_ordering LIMIT $3",
            destination,
            after,
            limit,
        )
        return [QueuedPdu(int(r[0]), r[1], r[2]) for r in rows]

    async def max_destination_room_ordering(self, destination: str) -> int | None:
        value = await self.db.fetchval(
            "SELECT MAX(stream_ordering) FROM federation_destination_rooms WHERE destination = $1",
            destination,
        )
        return int(value) if value is not None else None

    async def finish_catch_up(self, destination: str, upto: int) -> bool:
        """Leave catch-up mode when no room has events for `destination` after `upto` (checked in
        the same transaction). Returns whether it left."""
        async with self.db.transaction() as conn:
            pending = await conn.fetchval(
                "SELECT COUNT(*) FROM federation_destination_rooms"
                " WHERE destination = $1 AND stream_ordering > $2",
                destination,
                upto,
            )
            if int(pending):
                return False
            await conn.execute(
                "UPDATE federation_destination_queues SET catching_up = $2,"
                " last_successful_stream_ordering = $3 WHERE destination = $1",
                destination,
                False,
                upto,
            )
            return True

    async def set_last_successful(self, destination: str, stream_ordering: int) -> None:
        async with self.db.transaction() as conn:
            await self._ensure_txn(conn, destination)
            await conn.execute(
                "UPDATE federation_destination_queues SET last_successful_stream_ordering = $2"
                " WHERE destination = $1 AND (last_successful_stream_ordering IS NULL"
                " OR last_successful_stream_ordering < $2)",
                destination,
                stream_ordering,
            )

    # -- EDUs ------------------------------------------------------------------------------------

    async def max_edu_seq(self) -> int:
        value = await self.db.fetchval("SELECT MAX(seq) FROM federation_edu_queue")
        return int(value) if value is not None else 0

    async def queue_edu_txn(
        self,
        conn: Connection,
        destination: str,
        seq: int,
        edu_type: str,
        content: dict[str, Any],
        coalesce_key: str | None,
    ) -> None:
        if coalesce_key is not None:
            await conn.execute(
                "DELETE FROM federation_edu_queue"
                " WHERE destination = $1 AND edu_type = $2 AND coalesce_key = $3",
                destination,
                edu_type,
                coalesce_key,
            )
        await conn.execute(
            "INSERT INTO federation_edu_queue (destination, seq, edu_type, coalesce_key, content)"
            " VALUES ($1, $2, $3, $4, $5)",
            destination,
            seq,
            edu_type,
            coalesce_key,
            json.dumps(content),
        )

    async def list_edus(self, destination: str, limit: int) -> list[QueuedEdu]:
        rows = await self.db.fetch(
            "SELECT seq, edu_type, content FROM federation_edu_queue WHERE destination = $1"
            " ORDER BY seq LIMIT $2",
            destination,
            limit,
        )
        return [QueuedEdu(int(r[0]), r[1], json.loads(r[2])) for r in rows]

    # -- the outbox (federation/sender/outbox.py) -------------------------------------------------

    async def outbox_put_txn(
        self, conn: Connection, destination: str, edu_type: str, content: dict[str, Any], key: str | None
    ) -> int:
        value = await conn.fetchval(
            "INSERT INTO federation_outbox (destination, edu_type, coalesce_key, content)"
            " VALUES ($1, $2, $3, $4) RETURNING id",
            destination,
            edu_type,
            key,
            json.dumps(content),
        )
        return int(value)

    async def outbox_rows_txn(self, conn: Connection, limit: int) -> list[OutboxEdu]:
        rows = await conn.fetch(
            "SELECT id, destination, edu_type, coalesce_key, content FROM federation_outbox"
            " ORDER BY id LIMIT $1",
            limit,
        )
        return [OutboxEdu(int(r[0]), r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    async def outbox_delete_txn(self, conn: Connection, ids: Sequence[int]) -> None:
        # by id, not "up to the last id": a row committed meanwhile with a lower id stays queued
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            await conn.execute(
                f"DELETE FROM federation_outbox WHERE id IN ({_placeholders(len(chunk))})", *chunk
            )

    # -- transactions ----------------------------------------------------------------------------

    async def begin_txn(
        self,
        destination: str,
        make_id: Any,
        body: dict[str, Any],
        pdu_orderings: Sequence[int],
        edu_seqs: Sequence[int],
    ) -> InFlightTxn:
        """Persist a new transaction as in flight; `make_id(seq)` names it from the counter."""
        async with self.db.transaction() as conn:
            await self._ensure_txn(conn, destination)
            seq = (
                int(
                    await conn.fetchval(
                        "SELECT txn_seq FROM federation_destination_queues WHERE destination = $1",
                        destination,
                    )
                )
                + 1
            )
            txn_id = str(make_id(seq))
            await conn.execute(
                "UPDATE federation_destination_queues SET txn_seq = $2, txn_id = $3, txn_body = $4,"
                " txn_pdus = $5, txn_edus = $6 WHERE destination = $1",
                destination,
                seq,
                txn_id,
                json.dumps(body),
                json.dumps(list(pdu_orderings)),
                json.dumps(list(edu_seqs)),
            )
        return InFlightTxn(txn_id, body, tuple(pdu_orderings), tuple(edu_seqs))

    async def complete_txn(self, destination: str, txn: InFlightTxn, *, delivered: bool) -> None:
        """The transaction is answered: drop its PDUs and EDUs from the queues and clear it. With
        `delivered`, the destination now has everything up to its last PDU."""
        async with self.db.transaction() as conn:
            await self._delete_txn_contents(conn, destination, txn.pdu_orderings, txn.edu_seqs)
            await conn.execute(
                "UPDATE federation_destination_queues SET txn_id = NULL, txn_body = NULL, txn_pdus = NULL,"
                " txn_edus = NULL WHERE destination = $1",
                destination,
            )
            if delivered and txn.pdu_orderings:
                await conn.execute(
                    "UPDATE federation_destination_queues SET last_successful_stream_ordering = $2"
                    " WHERE destination = $1 AND (last_successful_stream_ordering IS NULL"
                    " OR last_successful_stream_ordering < $2)",
                    destination,
                    max(txn.pdu_orderings),
                )

    async def _delete_txn_contents(
        self, conn: Connection, destination: str, pdus: Iterable[int], edus: Iterable[int]
    ) -> None:
        pdu_list, edu_list = list(pdus), list(edus)
        for start in range(0, len(pdu_list), 500):
            chunk = pdu_list[start : start + 500]
            await conn.execute(
                f"DELETE FROM federation_pdu_queue WHERE destination = $1"
                f" AND stream_ordering IN ({_placeholders(len(chunk), 2)})",
                destination,
                *chunk,
            )
        for start in range(0, len(edu_list), 500):
            chunk = edu_list[start : start + 500]
            await conn.execute(
                "DELETE FROM federation_edu_queue WHERE destination = $1"
                f" AND seq IN ({_placeholders(len(chunk), 2)})",
                destination,
                *chunk,
            )

    async def reset_destination(self, destination: str) -> None:
        """Admin reset: forget the transaction in flight (its contents stay queued)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE federation_destination_queues SET txn_id = NULL, txn_body = NULL, txn_pdus = NULL,"
                " txn_edus = NULL WHERE destination = $1",
                destination,
            )

    # -- device lists ----------------------------------------------------------------------------

    async def swap_device_list_sent_txn(
        self, conn: Connection, destination: str, user_id: str, stream_id: int
    ) -> int | None:
        """Record `stream_id` as the last device-list update queued for (destination, user);
        returns the previous one (the update's prev_id)."""
        prev = await conn.fetchval(
            "SELECT stream_id FROM federation_device_list_sent WHERE destination = $1 AND user_id = $2",
            destination,
            user_id,
        )
        await conn.execute(
            "INSERT INTO federation_device_list_sent (destination, user_id, stream_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (destination, user_id) DO UPDATE SET stream_id = excluded.stream_id",
            destination,
            user_id,
            stream_id,
        )
        return int(prev) if prev is not None else None

    async def changed_devices(self, stream_ids: Sequence[int]) -> dict[tuple[int, str], list[str]]:
        """(stream_id, user_id) -> device ids the change was about."""
        result: dict[tuple[int, str], list[str]] = {}
        ids = list(stream_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self.db.fetch(
                "SELECT stream_id, user_id, device_id FROM device_lists_changed_devices"
                f" WHERE stream_id IN ({_placeholders(len(chunk))}) ORDER BY device_id",
                *chunk,
            )
            for r in rows:
                result.setdefault((int(r[0]), r[1]), []).append(r[2])
        return result


# -- admin API (Synapse's /_synapse/admin/v1/federation/destinations) ----------------------------


@dataclass(frozen=True, slots=True)
class DestinationInfo:
    destination: str
    failure_ts: int | None
    retry_last_ts: int
    retry_interval: int
    last_successful_stream_ordering: int | None


DESTINATION_ORDER = {
    "destination": "d.destination",
    "retry_last_ts": "COALESCE(b.retry_last_ts, 0)",
    "retry_interval": "COALESCE(b.retry_interval, 0)",
    "failure_ts": "COALESCE(b.failure_ts, -1)",
    "last_successful_stream_ordering": "COALESCE(q.last_successful_stream_ordering, -1)",
}

_KNOWN = (
    "(SELECT destination FROM destinations UNION SELECT destination FROM federation_destination_queues"
    " UNION SELECT destination FROM federation_destination_rooms) d"
    " LEFT JOIN destinations b ON b.destination = d.destination"
    " LEFT JOIN federation_destination_queues q ON q.destination = d.destination"
)
_INFO_COLS = (
    "d.destination, b.failure_ts, COALESCE(b.retry_last_ts, 0), COALESCE(b.retry_interval, 0),"
    " q.last_successful_stream_ordering"
)


def _info(r: Any) -> DestinationInfo:
    return DestinationInfo(
        r[0],
        int(r[1]) if r[1] is not None else None,
        int(r[2]),
        int(r[3]),
        int(r[4]) if r[4] is not None else None,
    )


def _like(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class DestinationAdminStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_destinations(
        self, offset: int, limit: int, order_by: str, backwards: bool, search: str | None
    ) -> tuple[list[DestinationInfo], int]:
        where, args = "", []
        if search:
            where, args = " WHERE LOWER(d.destination) LIKE $1 ESCAPE '\\'", [_like(search)]
        total = await self.db.fetchval(f"SELECT COUNT(*) FROM {_KNOWN}{where}", *args)
        direction = "DESC" if backwards else "ASC"
        n = len(args)
        rows = await self.db.fetch(
            f"SELECT {_INFO_COLS} FROM {_KNOWN}{where}"
            f" ORDER BY {DESTINATION_ORDER[order_by]} {direction}, d.destination {direction}"
            f" LIMIT ${n + 1} OFFSET ${n + 2}",
            *args,
            limit,
            offset,
        )
        return [_info(r) for r in rows], int(total)

    async def get_destination(self, destination: str) -> DestinationInfo | None:
        row = await self.db.fetchrow(
            f"SELECT {_INFO_COLS} FROM {_KNOWN} WHERE d.destination = $1", destination
        )
        return _info(row) if row is not None else None

    async def list_destination_rooms(
        self, destination: str, offset: int, limit: int, backwards: bool
    ) -> tuple[list[tuple[str, int]], int]:
        total = await self.db.fetchval(
            "SELECT COUNT(*) FROM federation_destination_rooms WHERE destination = $1", destination
        )
        direction = "DESC" if backwards else "ASC"
        rows = await self.db.fetch(
            "SELECT room_id, stream_ordering FROM federation_destination_rooms WHERE destination = $1"
            f" ORDER BY room_id {direction} LIMIT $2 OFFSET $3",
            destination,
            limit,
            offset,
        )
        return [(r[0], int(r[1])) for r in rows], int(total)
