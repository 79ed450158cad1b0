"""A pooled connection whose driver protocol state is broken (the FATAL of a PostgreSQL shutdown
still being consumed) behaves like a lost one: the statement gets 503-style
`DatabaseUnavailableError`, and the connection is terminated, never handed out again."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from homeserver.core.errors import DatabaseUnavailableError
from homeserver.storage.postgres import PostgresDatabase


class _BrokenConnection:
    def __init__(self) -> None:
        self.terminated = False

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")

    def terminate(self) -> None:
        self.terminated = True


class _Pool:
    def __init__(self, conn: _BrokenConnection) -> None:
        self.conn = conn
        self.released: list[_BrokenConnection] = []

    async def acquire(self) -> _BrokenConnection:
        return self.conn

    async def release(self, conn: _BrokenConnection) -> None:
        self.released.append(conn)


async def test_broken_protocol_state_is_unavailable_and_terminates_the_connection() -> None:
    db = PostgresDatabase("postgresql://unused")
    conn = _BrokenConnection()
    pool = _Pool(conn)
    db._pool = pool  # type: ignore[assignment]
    with pytest.raises(DatabaseUnavailableError):
        await db.fetch("SELECT 1")
    assert conn.terminated
    assert pool.released == [conn]


async def test_an_ordinary_error_keeps_the_connection() -> None:
    db = PostgresDatabase("postgresql://unused")

    class _Failing(_BrokenConnection):
        async def fetch(self, sql: str, *args: Any) -> list[Any]:
            raise asyncpg.exceptions.UndefinedTableError("no such table")

    conn = _Failing()
    db._pool = _Pool(conn)  # type: ignore[assignment]
    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        await db.fetch("SELECT 1")
    assert not conn.terminated
