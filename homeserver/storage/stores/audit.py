"""audit_log table: one append-only row per audited action (see services/audit.py).

There is deliberately no update method; rows leave only through `delete_before` (the retention
purge). The schema adds a trigger that refuses UPDATEs on both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.core import json as hjson
from homeserver.storage.database import Connection, Database, Row


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    ts: int
    actor: str | None
    action: str
    target: str | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters, all optional and combined with AND: `since_ts` inclusive, `until_ts` exclusive."""

    since_ts: int | None = None
    until_ts: int | None = None
    actor: str | None = None
    action: str | None = None
    target: str | None = None


_COLS = "id, ts, actor, action, target, ip, user_agent, detail"


def _record(r: Row) -> AuditRecord:
    try:
        detail = hjson.loads(r[7]) if r[7] else {}
    except ValueError:
        detail = {}
    return AuditRecord(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6], detail)


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_txn(
        self,
        conn: Connection,
        *,
        ts: int,
        actor: str | None,
        action: str,
        target: str | None,
        ip: str | None,
        user_agent: str | None,
        detail: dict[str, Any],
    ) -> None:
        await conn.execute(
            "INSERT INTO audit_log (ts, actor, action, target, ip, user_agent, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ts,
            actor,
            action,
            target,
            ip,
            user_agent,
            hjson.dumps_str(detail),
        )

    async def list_records(
        self,
        query: AuditQuery,
        *,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[AuditRecord]:
        """One page, keyset-paged by id: `after_id` is the last id of the previous page (in the
        page's direction), so paging stays stable while new records arrive."""
        clauses: list[str] = []
        args: list[Any] = []

        def add(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.replace("?", f"${len(args)}"))

        if query.since_ts is not None:
            add("ts >= ?", query.since_ts)
        if query.until_ts is not None:
            add("ts < ?", query.until_ts)
        if query.actor is not None:
            add("actor = ?", query.actor)
        if query.action is not None:
            add("action = ?", query.action)
        if query.target is not None:
            add("target = ?", query.target)
        if after_id is not None:
            add("id < ?" if newest_first else "id > ?", after_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "DESC" if newest_first else "ASC"
        args.append(max(0, limit))
        rows = await self.db.fetch(
            f"SELECT {_COLS} FROM audit_log{where} ORDER BY id {order} LIMIT ${len(args)}", *args
        )
        return [_record(r) for r in rows]

    async def delete_before(self, ts: int, *, batch: int = 10_000) -> int:
        """The retention purge: delete records older than `ts` in batches; returns how many."""
        total = 0
        while True:
            async with self.db.transaction() as conn:
                ids = [
                    int(r[0])
                    for r in await conn.fetch(
                        "SELECT id FROM audit_log WHERE ts < $1 ORDER BY id LIMIT $2", ts, batch
                    )
                ]
                if not ids:
                    return total
                await conn.execute("DELETE FROM audit_log WHERE id <= $1 AND ts < $2", ids[-1], ts)
            total += len(ids)
