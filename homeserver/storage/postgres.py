"""PostgreSQL engine on an asyncpg pool."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg

from homeserver.storage.database import Connection, Dialect, Row
from homeserver.storage.metrics import caller_name, observe_statement, observe_txn


class _PgConnection(Connection):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        start = time.perf_counter()
        await self._conn.execute(sql, *args)
        observe_statement(sql, time.perf_counter() - start)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        start = time.perf_counter()
        await self._conn.executemany(sql, list(rows))
        observe_statement(sql, time.perf_counter() - start)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        start = time.perf_counter()
        rows = list(await self._conn.fetch(sql, *args))
        observe_statement(sql, time.perf_counter() - start)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        start = time.perf_counter()
        row = await self._conn.fetchrow(sql, *args)
        observe_statement(sql, time.perf_counter() - start)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        start = time.perf_counter()
        value = await self._conn.fetchval(sql, *args)
        observe_statement(sql, time.perf_counter() - start)
        return value


class PostgresDatabase:
    dialect: Dialect = "postgres"

    def __init__(self, dsn: str | None = None, *, min_size: int = 2, max_size: int = 10, **kwargs: Any):
        self._dsn = dsn
        self._kwargs = kwargs
        self._min = min_size
        self._max = max_size
        self._pool: asyncpg.Pool | None = None
        self._waiting = 0  # tasks waiting for a pooled connection (a gauge)

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=self._min, max_size=self._max, **self._kwargs
        )

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "database not opened"
        return self._pool

    def pool_stats(self) -> tuple[int, int, int]:
        """(connections in use, idle, tasks waiting for one)."""
        if self._pool is None:
            return 0, 0, self._waiting
        idle = self._pool.get_idle_size()
        return self._pool.get_size() - idle, idle, self._waiting

    @asynccontextmanager
    async def _connection(self, desc: str, *, write: bool) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; the wait for it and its use are the metrics' schedule and txn time."""
        requested = time.perf_counter()
        self._waiting += 1
        try:
            conn = await self.pool.acquire()
        finally:
            self._waiting -= 1
        start = time.perf_counter()
        try:
            yield conn
        finally:
            await self.pool.release(conn)
            observe_txn(desc, start - requested, time.perf_counter() - start, write=write)

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._connection(caller_name(), write=True) as conn:
            await _PgConnection(conn).execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction(caller_name()) as conn:
            await conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._connection(caller_name(), write=False) as conn:
            return await _PgConnection(conn).fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._connection(caller_name(), write=False) as conn:
            return await _PgConnection(conn).fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._connection(caller_name(), write=False) as conn:
            return await _PgConnection(conn).fetchval(sql, *args)

    def transaction(self, desc: str | None = None) -> AbstractAsyncContextManager[Connection]:
        """One transaction; `desc` (default: the calling function's name) labels its metrics."""
        return self._transaction(desc or caller_name())

    @asynccontextmanager
    async def _transaction(self, desc: str) -> AsyncIterator[Connection]:
        async with self._connection(desc, write=True) as conn, conn.transaction():
            yield _PgConnection(conn)

    async def execute_script(self, sql: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(sql)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
