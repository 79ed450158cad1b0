"""PostgreSQL engine on an asyncpg pool."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from homeserver.storage.database import Connection, Dialect, Row, Statement


class _PgConnection(Connection):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, list(rows))

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        for sql, rows in statements:
            if len(rows) == 1:
                await self._conn.execute(sql, *rows[0])
            else:
                await self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *args)


class PostgresDatabase:
    dialect: Dialect = "postgres"

    def __init__(self, dsn: str | None = None, *, min_size: int = 2, max_size: int = 10, **kwargs: Any):
        self._dsn = dsn
        self._kwargs = kwargs
        self._min = min_size
        self._max = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=self._min, max_size=self._max, **self._kwargs
        )

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "database not opened"
        return self._pool

    async def execute(self, sql: str, *args: Any) -> None:
        await self.pool.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, rows)

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        async with self.transaction() as conn:
            await conn.run_batch(statements)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self.pool.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self.pool.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield _PgConnection(conn)

    async def execute_script(self, sql: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(sql)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
