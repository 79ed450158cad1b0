"""reports: content reports (events, rooms, users) filed by local users, kept for the server admins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Row

EVENT = "event"
ROOM = "room"
USER = "user"
KINDS = (EVENT, ROOM, USER)


@dataclass(frozen=True, slots=True)
class Report:
    id: int
    kind: str  # EVENT, ROOM or USER
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None  # user reports: the reported user; event reports: the event's sender
    reason: str | None
    score: int | None
    received_ts: int


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """Filters for `ReportStore.list_reports` (all optional, combined with AND)."""

    kind: str | None = None
    room_id: str | None = None
    reporter: str | None = None
    target_user_id: str | None = None


_COLS = "id, kind, reporter, room_id, event_id, target_user_id, reason, score, received_ts"


def _report(r: Row) -> Report:
    return Report(
        int(r[0]),
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        int(r[7]) if r[7] is not None else None,
        int(r[8]),
    )


class ReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_report(
        self,
        kind: str,
        reporter: str,
        *,
        received_ts: int,
        room_id: str | None = None,
        event_id: str | None = None,
        target_user_id: str | None = None,
        reason: str | None = None,
        score: int | None = None,
    ) -> int:
        """Store a report; returns its id (ids grow with time)."""
        if kind not in KINDS:
            raise ValueError(f"unknown report kind {kind!r}")
        # Through a transaction: a statement that writes must run on the writer connection.
        async with self.db.transaction() as conn:
            report_id = await conn.fetchval(
                "INSERT INTO reports (kind, reporter, room_id, event_id, target_user_id, reason, score,"
                " received_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                kind,
                reporter,
                room_id,
                event_id,
                target_user_id,
                reason,
                score,
                received_ts,
            )
        return int(report_id)

    async def get_report(self, report_id: int) -> Report | None:
        row = await self.db.fetchrow(f"SELECT {_COLS} FROM reports WHERE id = $1", report_id)
        return _report(row) if row else None

    async def list_reports(
        self,
        query: ReportQuery | None = None,
        *,
        offset: int = 0,
        limit: int = 100,
        newest_first: bool = True,
    ) -> tuple[list[Report], int]:
        """One page of the reports matching `query` and the total number matching (Synapse's admin
        API pages by offset: `from`, `limit`, `dir`)."""
        query = query or ReportQuery()
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("kind", query.kind),
            ("room_id", query.room_id),
            ("reporter", query.reporter),
            ("target_user_id", query.target_user_id),
        ):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        total = int(await self.db.fetchval(f"SELECT COUNT(*) FROM reports{where}", *args) or 0)
        order = "DESC" if newest_first else "ASC"
        rows = await self.db.fetch(
            f"SELECT {_COLS} FROM reports{where} ORDER BY id {order}"
            f" LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args,
            max(0, limit),
            max(0, offset),
        )
        return [_report(r) for r in rows], total

    async def delete_report(self, report_id: int) -> bool:
        """Delete one report (an admin dealt with it); False when there was none."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("DELETE FROM reports WHERE id = $1 RETURNING id", report_id)
        return row is not None
