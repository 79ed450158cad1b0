"""PostgreSQL engine on an asyncpg pool.

Losing the server (PostgreSQL restarting, stopped, network gone) raises `DatabaseUnavailableError`
(503 `M_UNKNOWN` with a retry hint) from every statement instead of a driver exception, so
clients retry instead of seeing a 500. Nothing else is needed to recover: the pool drops broken
connections and opens new ones on the next acquire once PostgreSQL answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from homeserver.core.errors import DatabaseUnavailableError
from homeserver.storage.database import Connection, Dialect, Row, Statement
from homeserver.storage.metrics import caller_name, observe_statement, observe_txn

logger = logging.getLogger(__name__)

# SQLSTATE class 08 (connection exceptions) and the "server is going away / not ready" states.
_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def _is_connection_loss(exc: BaseException) -> bool:
    if isinstance(exc, (*_LOST, asyncpg.InternalClientError)):
        # InternalClientError: the driver's protocol state is broken, e.g. a connection still
        # consuming the FATAL error of a server shutting down ("another operation (2) is in
        # progress"); the connection is unusable, exactly like a lost one.
        return True
    # Opening a new connection while the server is down: refused, reset, timed out, DNS.
    if isinstance(exc, OSError | TimeoutError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


@contextmanager
def _unavailable_on_loss() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if not _is_connection_loss(exc):
            raise
        logger.warning("PostgreSQL unavailable: %s", _one_line(exc))
        raise DatabaseUnavailableError(f"PostgreSQL unavailable: {_one_line(exc)}") from exc


def _protocol_broken(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailableError) else exc
    return isinstance(cause, asyncpg.InternalClientError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


class _OneLineFilter(logging.Filter):
    """asyncpg's pool logs each failed reconnect with a full traceback while PostgreSQL is down;
    one line with the reason says the same to an operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {_one_line(record.exc_info[1])}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLineFilter())


class _PgConnection(Connection):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        start = time.perf_counter()
        with _unavailable_on_loss():
            await self._conn.execute(sql, *args)
        observe_statement(sql, time.perf_counter() - start)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        start = time.perf_counter()
        with _unavailable_on_loss():
            await self._conn.executemany(sql, list(rows))
        observe_statement(sql, time.perf_counter() - start)

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        for sql, rows in statements:
            start = time.perf_counter()
            with _unavailable_on_loss():
                if len(rows) == 1:
                    await self._conn.execute(sql, *rows[0])
                else:
                    await self._conn.executemany(sql, rows)
            observe_statement(sql, time.perf_counter() - start)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        start = time.perf_counter()
        with _unavailable_on_loss():
            rows = list(await self._conn.fetch(sql, *args))
        observe_statement(sql, time.perf_counter() - start)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        start = time.perf_counter()
        with _unavailable_on_loss():
            row = await self._conn.fetchrow(sql, *args)
        observe_statement(sql, time.perf_counter() - start)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        start = time.perf_counter()
        with _unavailable_on_loss():
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

    def describe(self) -> str:
        """host:port/database for operator messages (never the password)."""
        kw = self._kwargs
        if self._dsn:
            return "the configured DSN"
        return f"{kw.get('host') or 'localhost'}:{kw.get('port') or 5432}/{kw.get('database') or '?'}"

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._min, max_size=self._max, **self._kwargs
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailableError(
                f"cannot connect to PostgreSQL at {self.describe()}: {_one_line(exc)}"
            ) from exc

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
            with _unavailable_on_loss():
                conn = await self.pool.acquire()
        finally:
            self._waiting -= 1
        start = time.perf_counter()
        try:
            yield conn
        except BaseException as exc:
            if _protocol_broken(exc):
                conn.terminate()  # never hand a connection in a broken protocol state to anyone
            raise
        finally:
            await self._release(conn)
            observe_txn(desc, start - requested, time.perf_counter() - start, write=write)

    async def _release(self, conn: asyncpg.Connection) -> None:
        # Returning a connection resets it; if PostgreSQL went away meanwhile that reset fails and
        # asyncpg discards the connection itself. The caller's work is already done (or has failed
        # with its own error), so the loss is not this operation's error.
        try:
            await self.pool.release(conn)
        except Exception as exc:
            if not _is_connection_loss(exc):
                raise
            logger.debug("connection lost while returning it to the pool: %s", _one_line(exc))

    async def execute(self, sql: str, *args: Any) -> None:
        async with self._connection(caller_name(), write=True) as conn:
            await _PgConnection(conn).execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction(caller_name()) as conn:
            await conn.executemany(sql, rows)

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        async with self.transaction(caller_name()) as conn:
            await conn.run_batch(statements)

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
        # Only the driver's own calls are translated: an OSError raised by the caller's code
        # inside the transaction (a media file, say) stays what it is.
        async with self._connection(desc, write=True) as conn:
            tx = conn.transaction()
            with _unavailable_on_loss():
                await tx.start()
            try:
                yield _PgConnection(conn)
            except BaseException:
                try:
                    await tx.rollback()
                except Exception as exc:
                    # A dead connection cannot roll back (the server already did); keep the
                    # original error, the pool discards the connection on release.
                    if not _is_connection_loss(exc):
                        raise
                raise
            with _unavailable_on_loss():
                await tx.commit()

    async def execute_script(self, sql: str) -> None:
        async with self.transaction() as conn:
            await conn.execute(sql)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
