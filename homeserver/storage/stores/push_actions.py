"""event_push_actions: per-user notifications and unread counts.

New rows go to `event_push_actions_staging` (one event's rows contiguous: cheap to write however many
members the room has) and are moved into `event_push_actions` (indexed per user) in bulk by
`fold_txn`. Every read covers both tables, so where a row lives is invisible to callers
(schema/0039_push_actions_staging.sql).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core.json import loads
from homeserver.storage.database import Connection, Database


@dataclass(frozen=True, slots=True)
class UnreadCount:
    room_id: str
    thread_id: str
    notifications: int
    highlights: int


@dataclass(frozen=True, slots=True)
class NotificationRow:
    event_id: str
    room_id: str
    stream_ordering: int
    actions: list[Any]
    read: bool
    created_ts: int


@dataclass(frozen=True, slots=True)
class PushAction:
    """One unread notification, as a pusher delivers it."""

    event_id: str
    room_id: str
    stream_ordering: int
    actions: list[Any]
    highlight: bool
    received_ts: int


_COLS = "user_id, event_id, room_id, stream_ordering, thread_id, actions, highlight, read, created_ts"


def _both(columns: str, where: str, alias: str = "epa") -> str:
    """`columns` of the rows matching `where` in both tables (a FROM item; the same placeholders
    appear in both branches, so each branch can use its own indexes)."""
    return (
        f"(SELECT {columns} FROM event_push_actions WHERE {where}"
        f" UNION ALL SELECT {columns} FROM event_push_actions_staging WHERE {where}) AS {alias}"
    )


class PushActionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_txn(
        self, conn: Connection, rows: Sequence[tuple[str, str, str, int, str, str, bool, int]]
    ) -> None:
        """rows: (user_id, event_id, room_id, stream_ordering, thread_id, actions_json, highlight, ts).
        Staged: see `fold_txn`. An event is evaluated once (the persister stores it once), so the
        staging table needs no uniqueness check; the fold keeps the first row of a pair anyway."""
        await conn.executemany(
            "INSERT INTO event_push_actions_staging (user_id, event_id, room_id, stream_ordering,"
            " thread_id, actions, highlight, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            rows,
        )

    async def staged_count_txn(self, conn: Connection) -> int:
        return int(await conn.fetchval("SELECT COUNT(*) FROM event_push_actions_staging") or 0)

    async def fold_txn(self, conn: Connection) -> None:
        """Move every staged row into event_push_actions, sorted by user (a user's new rows then
        share index pages). Atomic for concurrent readers and writers: on SQLite the transaction
        holds the only write lock; on PostgreSQL the DELETE locks the rows it moves, so a
        concurrent `mark_read` (which updates the staging table first) waits and then finds them
        in event_push_actions."""
        if self.db.dialect == "postgres":
            await conn.execute(
                f"WITH moved AS (DELETE FROM event_push_actions_staging RETURNING {_COLS})"
                f" INSERT INTO event_push_actions ({_COLS}) SELECT {_COLS} FROM moved"
                " ORDER BY user_id, stream_ordering ON CONFLICT (user_id, event_id) DO NOTHING"
            )
            return
        # SQLite: `WHERE TRUE` keeps the upsert clause unambiguous after a SELECT (SQLite docs).
        await conn.execute(
            f"INSERT INTO event_push_actions ({_COLS}) SELECT {_COLS} FROM event_push_actions_staging"
            " WHERE TRUE ORDER BY user_id, stream_ordering ON CONFLICT (user_id, event_id) DO NOTHING"
        )
        await conn.execute("DELETE FROM event_push_actions_staging")

    async def room_unread_counts(self, user_id: str, room_id: str) -> list[UnreadCount]:
        rows = await self.db.fetch(
            "SELECT thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END) FROM "
            + _both("thread_id, highlight", "user_id = $1 AND NOT read AND room_id = $2")
            + " GROUP BY thread_id",
            user_id,
            room_id,
        )
        return [UnreadCount(room_id, r[0], int(r[1]), int(r[2] or 0)) for r in rows]

    async def user_unread_counts(self, user_id: str) -> list[UnreadCount]:
        """A user's unread counts in every room, per thread (one query for an initial sync)."""
        rows = await self.db.fetch(
            "SELECT room_id, thread_id, COUNT(*), SUM(CASE WHEN highlight THEN 1 ELSE 0 END) FROM "
            + _both("room_id, thread_id, highlight", "user_id = $1 AND NOT read")
            + " GROUP BY room_id, thread_id",
            user_id,
        )
        return [UnreadCount(r[0], r[1], int(r[2]), int(r[3] or 0)) for r in rows]

    async def mark_read(self, user_id: str, room_id: str, upto: int, thread_id: str | None) -> None:
        """Everything up to stream `upto` in the room (or in one thread of it) is read."""
        async with self.db.transaction() as conn:
            await self._mark_read(conn, user_id, room_id, upto, thread_id)

    async def mark_read_txn(self, conn: Connection, user_id: str, room_id: str, upto: int) -> None:
        await self._mark_read(conn, user_id, room_id, upto, None)

    @staticmethod
    async def _mark_read(
        conn: Connection, user_id: str, room_id: str, upto: int, thread_id: str | None
    ) -> None:
        # Staging first: a row a concurrent fold moves is then found in event_push_actions by the
        # second statement (see fold_txn).
        thread = "" if thread_id is None else " AND thread_id = $4"
        args: tuple[Any, ...] = (user_id, room_id, upto)
        if thread_id is not None:
            args += (thread_id,)
        for table in ("event_push_actions_staging", "event_push_actions"):
            await conn.execute(
                f"UPDATE {table} SET read = TRUE WHERE user_id = $1 AND room_id = $2"
                f" AND stream_ordering <= $3{thread} AND NOT read",
                *args,
            )

    async def list_notifications(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[NotificationRow]:
        rows = await self.db.fetch(
            "SELECT event_id, room_id, stream_ordering, actions, read, created_ts FROM "
            + _both(
                "event_id, room_id, stream_ordering, actions, read, created_ts",
                "user_id = $1 AND stream_ordering < $2 AND (highlight OR NOT $3)",
            )
            + " ORDER BY stream_ordering DESC LIMIT $4",
            user_id,
            before if before is not None else 2**62,
            only_highlight,
            limit,
        )
        return [NotificationRow(r[0], r[1], int(r[2]), loads(r[3]), bool(r[4]), int(r[5])) for r in rows]

    # -- delivery (pushers) ------------------------------------------------------------------------

    async def unread_for_user_in_range(
        self, user_id: str, after: int, upto: int, limit: int, *, newest_first: bool = False
    ) -> list[PushAction]:
        """The user's unread notifications with after < stream_ordering <= upto, oldest first
        (http pushers) or newest first (email digests)."""
        order = "DESC" if newest_first else "ASC"
        rows = await self.db.fetch(
            "SELECT event_id, room_id, stream_ordering, actions, highlight, created_ts FROM "
            + _both(
                "event_id, room_id, stream_ordering, actions, highlight, created_ts",
                "user_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3 AND NOT read",
            )
            + f" ORDER BY stream_ordering {order} LIMIT $4",
            user_id,
            after,
            upto,
            limit,
        )
        return [PushAction(r[0], r[1], int(r[2]), loads(r[3]), bool(r[4]), int(r[5])) for r in rows]

    async def badge_count(self, user_id: str, *, group_by_room: bool) -> int:
        """Synapse's badge: pending invites plus, over joined rooms, the rooms with unread
        notifications (or the notifications themselves when not grouped by room)."""
        counted = "COUNT(DISTINCT e.room_id)" if group_by_room else "COUNT(*)"
        row = await self.db.fetchrow(
            f"SELECT {counted} FROM "
            + _both("user_id, room_id", "user_id = $1 AND NOT read", alias="e")
            + " JOIN room_memberships m ON m.room_id = e.room_id AND m.user_id = e.user_id"
            " WHERE m.membership = 'join'",
            user_id,
        )
        invites = await self.db.fetchrow(
            "SELECT COUNT(*) FROM room_memberships WHERE user_id = $1 AND membership = 'invite'", user_id
        )
        return int(row[0] if row else 0) + int(invites[0] if invites else 0)
