"""SQLite engine: WAL, one writer thread, a few reader threads; the event loop never blocks on I/O.

Writes are serialised on a single connection owned by one thread (SQLite allows one writer at a
time anyway; serialising in-process avoids SQLITE_BUSY). An asyncio lock gives a transaction the
writer for its whole duration. Reads run on their own connections in a small thread pool and see
the last committed state (WAL snapshot isolation).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, TypeVar

from homeserver.storage.database import Connection, Dialect, Row, Statement

logger = logging.getLogger(__name__)
T = TypeVar("T")

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=4096)
def _adapt_sql(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a process crash (kill -9); only an OS crash may lose
    # the last transactions, never corrupt the database.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-65536")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


class _SyncOps:
    """Statement helpers that run on a given sqlite3 connection (inside a worker thread)."""

    @staticmethod
    def execute(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> None:
        conn.execute(_adapt_sql(sql), args)

    @staticmethod
    def executemany(conn: sqlite3.Connection, sql: str, rows: list[Sequence[Any]]) -> None:
        conn.executemany(_adapt_sql(sql), rows)

    @staticmethod
    def run_batch(conn: sqlite3.Connection, statements: Sequence[Statement], _args: Any) -> None:
        for sql, rows in statements:
            if len(rows) == 1:
                conn.execute(_adapt_sql(sql), rows[0])
            else:
                conn.executemany(_adapt_sql(sql), rows)

    @staticmethod
    def fetch(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Row]:
        return conn.execute(_adapt_sql(sql), args).fetchall()

    @staticmethod
    def fetchrow(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> Row | None:
        row: Row | None = conn.execute(_adapt_sql(sql), args).fetchone()
        return row

    @staticmethod
    def fetchval(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> Any:
        row = conn.execute(_adapt_sql(sql), args).fetchone()
        return None if row is None else row[0]


class _WriterConnection(Connection):
    """A transaction's view: every statement runs on the writer thread."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def execute(self, sql: str, *args: Any) -> None:
        await self._db._on_writer(_SyncOps.execute, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._db._on_writer(_SyncOps.executemany, sql, list(rows))

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        if statements:
            await self._db._on_writer(_SyncOps.run_batch, statements, None)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        result: list[Row] = await self._db._on_writer(_SyncOps.fetch, sql, args)
        return result

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._db._on_writer(_SyncOps.fetchrow, sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._db._on_writer(_SyncOps.fetchval, sql, args)


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, path: str, readers: int = 4) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader_pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-reader")
        self._write_lock = asyncio.Lock()
        self._local = threading.local()
        self._writer: sqlite3.Connection | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        self._closed = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(
            self._writer_pool, lambda: _connect(self.path, readonly=False)
        )

    # -- thread dispatch ----------------------------------------------------------------------

    async def _on_writer(self, fn: Callable[..., T], sql: Any, args: Any) -> T:
        assert self._writer is not None, "database not opened"
        loop = asyncio.get_running_loop()
        writer = self._writer
        return await loop.run_in_executor(self._writer_pool, fn, writer, sql, args)

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._reader_conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _on_reader(self, fn: Callable[..., T], sql: str, args: Any) -> T:
        if self._closed:
            raise RuntimeError("database closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, lambda: fn(self._reader_conn(), sql, args))

    # -- autocommit statements ------------------------------------------------------------------

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._write_lock:
            await self._on_writer(_SyncOps.execute, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, rows)

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        async with self.transaction() as conn:
            await conn.run_batch(statements)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        result: list[Row] = await self._on_reader(_SyncOps.fetch, sql, args)
        return result

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._on_reader(_SyncOps.fetchrow, sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._on_reader(_SyncOps.fetchval, sql, args)

    # -- transactions --------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._write_lock:
            await self._on_writer(_SyncOps.execute, "BEGIN IMMEDIATE", ())
            try:
                yield _WriterConnection(self)
            except BaseException:
                # Roll back even when cancelled: the writer must never stay inside a transaction.
                await asyncio.shield(self._on_writer(_SyncOps.execute, "ROLLBACK", ()))
                raise
            else:
                await asyncio.shield(self._on_writer(_SyncOps.execute, "COMMIT", ()))

    async def execute_script(self, sql: str) -> None:
        def run(conn: sqlite3.Connection, script: str, _args: Any) -> None:
            # executescript commits any open transaction first, so wrap the script explicitly.
            conn.executescript("BEGIN IMMEDIATE;\n" + script + "\nCOMMIT;")

        async with self._write_lock:
            try:
                await self._on_writer(run, sql, ())
            except BaseException:
                assert self._writer is not None
                if self._writer.in_transaction:
                    await self._on_writer(_SyncOps.execute, "ROLLBACK", ())
                raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            loop = asyncio.get_running_loop()
            if self._writer is not None:
                writer = self._writer
                await loop.run_in_executor(self._writer_pool, _optimize_and_close, writer)
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)
        with self._reader_conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()


def _optimize_and_close(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA optimize")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:  # closing must not fail because of housekeeping
        logger.exception("sqlite housekeeping on close failed")
    conn.close()
