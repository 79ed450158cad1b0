"""jobs: background jobs (room deletion, history purge, notice broadcast) and their progress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core import json as hjson
from homeserver.storage.database import Connection, Database, Row

SCHEDULED = "scheduled"
ACTIVE = "active"
COMPLETE = "complete"
FAILED = "failed"
UNFINISHED = (SCHEDULED, ACTIVE)


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    kind: str
    subject: str | None
    params: dict[str, Any]
    status: str
    progress: dict[str, Any]
    error: str | None
    created_ts: int
    updated_ts: int
    completed_ts: int | None

    @property
    def finished(self) -> bool:
        return self.status in (COMPLETE, FAILED)


_COLS = "job_id, kind, subject, params, status, progress, error, created_ts, updated_ts, completed_ts"


def _job(r: Row) -> Job:
    return Job(
        r[0],
        r[1],
        r[2],
        hjson.loads(r[3]),
        r[4],
        hjson.loads(r[5]),
        r[6],
        int(r[7]),
        int(r[8]),
        int(r[9]) if r[9] is not None else None,
    )


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_job(
        self,
        job_id: str,
        kind: str,
        subject: str | None,
        params: dict[str, Any],
        progress: dict[str, Any],
        now: int,
    ) -> Job:
        await self.db.execute(
            f"INSERT INTO jobs ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $7, NULL)",
            job_id,
            kind,
            subject,
            hjson.dumps_str(params),
            SCHEDULED,
            hjson.dumps_str(progress),
            now,
        )
        return Job(job_id, kind, subject, params, SCHEDULED, progress, None, now, now, None)

    async def get_job(self, job_id: str) -> Job | None:
        row = await self.db.fetchrow(f"SELECT {_COLS} FROM jobs WHERE job_id = $1", job_id)
        return _job(row) if row is not None else None

    async def list_jobs(
        self, *, kind: str | None = None, subject: str | None = None, statuses: Sequence[str] = ()
    ) -> list[Job]:
        where, args = ["TRUE"], []
        for column, value in (("kind", kind), ("subject", subject)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if statuses:
            marks = []
            for status in statuses:
                args.append(status)
                marks.append(f"${len(args)}")
            where.append(f"status IN ({', '.join(marks)})")
        rows = await self.db.fetch(
            f"SELECT {_COLS} FROM jobs WHERE {' AND '.join(where)} ORDER BY created_ts, job_id", *args
        )
        return [_job(r) for r in rows]

    async def save_progress(
        self, job_id: str, status: str, progress: dict[str, Any], now: int, error: str | None = None
    ) -> None:
        async with self.db.transaction() as conn:
            await self.save_progress_txn(conn, job_id, status, progress, now, error)

    async def save_progress_txn(
        self,
        conn: Connection,
        job_id: str,
        status: str,
        progress: dict[str, Any],
        now: int,
        error: str | None = None,
    ) -> None:
        finished = status not in UNFINISHED
        await conn.execute(
            "UPDATE jobs SET status = $2, progress = $3, error = $4, updated_ts = $5,"
            " completed_ts = $6 WHERE job_id = $1",
            job_id,
            status,
            hjson.dumps_str(progress),
            error,
            now,
            now if finished else None,
        )

    async def delete_finished_before(self, before_ts: int) -> int:
        async with self.db.transaction() as conn:
            count = await conn.fetchval(
                "SELECT COUNT(*) FROM jobs WHERE completed_ts IS NOT NULL AND completed_ts < $1", before_ts
            )
            await conn.execute(
                "DELETE FROM jobs WHERE completed_ts IS NOT NULL AND completed_ts < $1", before_ts
            )
        return int(count or 0)
