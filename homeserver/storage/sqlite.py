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
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import lru_cache
from typing import Any, TypeVar

from homeserver.core.errors import DatabaseUnavailableError
from homeserver.storage.database import Connection, Dialect, Row, Statement
from homeserver.storage.metrics import caller_name, observe_statement, observe_txn

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


def _open_writer(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return _connect(path, readonly=False)


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
        # Timed here, per statement: _on_writer only sees the whole batch.
        for sql, rows in statements:
            start = time.perf_counter()
            if len(rows) == 1:
                conn.execute(_adapt_sql(sql), rows[0])
            else:
                conn.executemany(_adapt_sql(sql), rows)
            observe_statement(sql, time.perf_counter() - start)

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
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._reader_pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-reader")
        self._write_lock = asyncio.Lock()
        self._local = threading.local()
        self._writer: sqlite3.Connection | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        self._closed = False
        self._write_waiters = 0  # tasks waiting for the writer (a gauge)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._writer = await loop.run_in_executor(self._writer_pool, _open_writer, self.path)
        except (OSError, sqlite3.Error) as exc:
            # Startup only (an unwritable or missing data directory): one line for the operator.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DatabaseUnavailableError(f"cannot open SQLite database {self.path}: {reason}") from exc

    # -- thread dispatch ----------------------------------------------------------------------

    async def _on_writer(self, fn: Callable[..., T], sql: Any, args: Any) -> T:
        assert self._writer is not None, "database not opened"
        loop = asyncio.get_running_loop()
        writer = self._writer
        start = time.perf_counter()
        try:
            return await loop.run_in_executor(self._writer_pool, fn, writer, sql, args)
        finally:
            if isinstance(sql, str):  # a batch (run_batch) times its statements itself
                observe_statement(sql, time.perf_counter() - start)

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._reader_conns_lock:
                self._reader_conns.append(conn)
        return conn

    async def _on_reader(self, fn: Callable[..., T], sql: str, args: Any, desc: str) -> T:
        if self._closed:
            raise RuntimeError("database closed")
        loop = asyncio.get_running_loop()
        submitted = time.perf_counter()
        times = [submitted, submitted]  # started, finished: measured on the reader thread

        def run() -> T:
            times[0] = time.perf_counter()
            try:
                return fn(self._reader_conn(), sql, args)
            finally:
                times[1] = time.perf_counter()

        try:
            return await loop.run_in_executor(self._reader_pool, run)
        finally:
            # A cancelled wait may leave the thread's times unset: never report a negative time.
            started, finished = times
            run_sec = max(0.0, finished - started)
            observe_statement(sql, run_sec)
            observe_txn(desc, started - submitted, run_sec, write=False)

    def pool_stats(self) -> tuple[int, int, int]:
        """(connections in use, idle, tasks waiting) for the writer: SQLite has one."""
        busy = 1 if self._write_lock.locked() else 0
        return busy, 1 - busy, self._write_waiters

    @asynccontextmanager
    async def _writer_lock(self, desc: str) -> AsyncIterator[None]:
        """Hold the writer; the wait and the hold are the transaction's schedule and run time."""
        requested = time.perf_counter()
        self._write_waiters += 1
        try:
            await self._write_lock.acquire()
        finally:
            self._write_waiters -= 1
        start = time.perf_counter()
        try:
            yield
        finally:
            self._write_lock.release()
            observe_txn(desc, start - requested, time.perf_counter() - start, write=True)

    # -- autocommit statements ------------------------------------------------------------------

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._writer_lock(caller_name()):
            await self._on_writer(_SyncOps.execute, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction(caller_name()) as conn:
            await conn.executemany(sql, rows)

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        async with self.transaction(caller_name()) as conn:
            await conn.run_batch(statements)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        result: list[Row] = await self._on_reader(_SyncOps.fetch, sql, args, caller_name())
        return result

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._on_reader(_SyncOps.fetchrow, sql, args, caller_name())

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._on_reader(_SyncOps.fetchval, sql, args, caller_name())

    # -- transactions --------------------------------------------------------------------------

    def transaction(self, desc: str | None = None) -> AbstractAsyncContextManager[Connection]:
        """One write transaction; `desc` (default: the calling function's name) labels its metrics."""
        return self._transaction(desc or caller_name())

    @asynccontextmanager
    async def _transaction(self, desc: str) -> AsyncIterator[Connection]:
        async with self._writer_lock(desc):
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
