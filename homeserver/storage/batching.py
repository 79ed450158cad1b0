"""Deferred writes: a transaction's statements sent to the engine together.

On SQLite every statement is a hop to the writer thread (tens of microseconds of CPU and a
context switch each); the persister's group commit writes some fifteen small statements per batch.
`DeferredConnection` wraps a transaction's connection: `execute`/`executemany` are recorded, and
sent in order in one `run_batch` call when the caller flushes, or before any read (so reads inside
the transaction still see the earlier writes). Stores keep their ordinary `*_txn(conn, ...)`
methods; only the caller decides to defer.

A statement's error surfaces at the flush, still inside the transaction, which then rolls back as
usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.storage.database import Connection, Row, Statement


class DeferredConnection(Connection):
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: list[Statement] = []

    async def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            await self._conn.run_batch(pending)

    async def execute(self, sql: str, *args: Any) -> None:
        self._pending.append((sql, [args]))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self._pending.append((sql, rows))

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        self._pending.extend(statements)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        await self.flush()
        return await self._conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        await self.flush()
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self.flush()
        return await self._conn.fetchval(sql, *args)
