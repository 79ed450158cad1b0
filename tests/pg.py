"""PostgreSQL for tests: available or not, and throwaway databases.

Under CI=true a missing PostgreSQL fails the run; elsewhere the PostgreSQL variants skip with a
clear message.
"""

from __future__ import annotations

import os
import secrets

import asyncpg
import pytest

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("TEST_PG_PASSWORD") or None

_available: bool | None = None


async def _admin_conn() -> asyncpg.Connection:
    return await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, database="postgres", timeout=5
    )


async def require_postgres() -> None:
    """Skip (or, under CI=true, fail) the calling test when PostgreSQL is unreachable."""
    global _available
    if _available is None:
        try:
            conn = await _admin_conn()
        except (TimeoutError, OSError, asyncpg.PostgresError):
            _available = False
        else:
            await conn.close()
            _available = True
    if not _available:
        message = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)


async def create_database() -> str:
    name = f"hs_test_{secrets.token_hex(6)}"
    conn = await _admin_conn()
    try:
        # C collation keeps ordering byte-wise like SQLite; C.UTF-8 ctype keeps pg_trgm on Hangul.
        await conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'"
        )
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await _admin_conn()
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()
