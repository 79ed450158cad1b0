"""The one `Database` interface every store talks to.

SQL is written once with `$1`-style placeholders (PostgreSQL's); the SQLite engine rewrites them to
`?1`. Rows support access by column name (`row["user_id"]`) and by index on both engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Dialect = Literal["sqlite", "postgres"]
Row = Any  # sqlite3.Row or asyncpg.Record: both index by name and position
# (sql, rows): one statement run once per row
Statement = tuple[str, Sequence[Sequence[Any]]]


class Connection(Protocol):
    """Statements inside one transaction (or one autocommit statement outside of it)."""

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def run_batch(self, statements: Sequence[Statement]) -> None:
        """Several write statements in order, in one round trip to the engine where it can (the
        SQLite writer thread): see storage/batching.py."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


class Database(Connection, Protocol):
    dialect: Dialect

    def transaction(self, desc: str | None = None) -> AbstractAsyncContextManager[Connection]:
        """One atomic transaction: committed on normal exit, rolled back on exception. `desc` names
        it in the metrics (default: the calling function's name)."""
        ...

    def pool_stats(self) -> tuple[int, int, int]:
        """(connections in use, idle connections, tasks waiting for one), for the metrics."""
        ...

    async def execute_script(self, sql: str) -> None:
        """Run several statements (a migration file) in one transaction."""
        ...

    async def close(self) -> None: ...
