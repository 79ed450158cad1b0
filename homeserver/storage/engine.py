"""Open the configured database engine."""

from __future__ import annotations

import sqlite3
from typing import Protocol

import asyncpg

from homeserver.storage.database import Database
from homeserver.storage.postgres import PostgresDatabase
from homeserver.storage.sqlite import SqliteDatabase


class DatabaseSettings(Protocol):
    """What opening a database reads (config.DatabaseConfig has it; read-only, so frozen fits)."""

    @property
    def engine(self) -> str: ...
    @property
    def sqlite_path(self) -> str: ...
    @property
    def pg_user(self) -> str | None: ...
    @property
    def pg_password(self) -> str | None: ...
    @property
    def pg_database(self) -> str | None: ...
    @property
    def pg_host(self) -> str | None: ...
    @property
    def pg_port(self) -> int | None: ...
    @property
    def cp_min(self) -> int: ...
    @property
    def cp_max(self) -> int: ...


async def open_database(settings: DatabaseSettings) -> Database:
    if settings.engine == "sqlite":
        sqlite = SqliteDatabase(settings.sqlite_path)
        await sqlite.open()
        return sqlite
    if settings.engine == "postgres":
        pg = PostgresDatabase(
            user=settings.pg_user,
            password=settings.pg_password,
            database=settings.pg_database,
            host=settings.pg_host,
            port=settings.pg_port,
            min_size=settings.cp_min,
            max_size=settings.cp_max,
        )
        await pg.open()
        return pg
    raise ValueError(f"unknown database engine {settings.engine!r}")


def is_data_error(exc: BaseException) -> bool:
    """True when a statement failed because of the data it was given (PostgreSQL's class 22, e.g.
    a NUL character in text; SQLite's DataError), not because of the database or the code."""
    return isinstance(exc, asyncpg.DataError | sqlite3.DataError)
