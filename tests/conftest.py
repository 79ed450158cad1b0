"""Shared fixtures: configs for both engines, databases, in-process app clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import SERVICES, create_app_from_config
from homeserver.config import HomeserverConfig, build_config
from homeserver.container import Services
from homeserver.storage.database import Database
from homeserver.storage.engine import open_database

from .pg import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER, create_database, drop_database, require_postgres

ENGINES = ["sqlite", "postgres"]

OPEN_LIMITS = {"per_second": 10000, "burst_count": 100000}


def make_config(
    tmp_path: Path, engine: str = "sqlite", pg_database: str | None = None, **extra: Any
) -> HomeserverConfig:
    if engine == "sqlite":
        database: dict[str, Any] = {"name": "sqlite3", "args": {"database": str(tmp_path / "hs.db")}}
    else:
        database = {
            "name": "psycopg2",
            "args": {
                "user": PG_USER,
                "password": PG_PASSWORD,
                "database": pg_database,
                "host": PG_HOST,
                "port": PG_PORT,
                "cp_min": 1,
                "cp_max": 5,
            },
        }
    raw: dict[str, Any] = {
        "server_name": "test.local",
        "data_dir": str(tmp_path),
        "database": database,
        "registration_shared_secret": "test-secret",
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        "rc_login": {"address": OPEN_LIMITS, "account": OPEN_LIMITS, "failed_attempts": OPEN_LIMITS},
        "rc_registration": OPEN_LIMITS,
        "rc_message": OPEN_LIMITS,
    }
    raw.update(extra)
    return build_config(raw)


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    await require_postgres()
    name = await create_database()
    try:
        yield name
    finally:
        await drop_database(name)


@pytest.fixture(params=ENGINES)
async def engine_config(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., HomeserverConfig]]:
    """A config factory for each engine (PostgreSQL gets a fresh database)."""
    engine = request.param
    if engine == "sqlite":
        yield lambda **extra: make_config(tmp_path, "sqlite", **extra)
        return
    await require_postgres()
    name = await create_database()
    try:
        yield lambda **extra: make_config(tmp_path, "postgres", name, **extra)
    finally:
        await drop_database(name)


@pytest.fixture
async def db(engine_config: Callable[..., HomeserverConfig]) -> AsyncIterator[Database]:
    database = await open_database(engine_config().database)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def config(tmp_path: Path) -> HomeserverConfig:
    return make_config(tmp_path)


@pytest.fixture
async def client(aiohttp_client: Any, config: HomeserverConfig) -> Any:
    """An in-process test client on SQLite."""
    return await aiohttp_client(create_app_from_config(config))


@pytest.fixture
async def any_engine_client(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    """An in-process test client, once per engine."""
    return await aiohttp_client(create_app_from_config(engine_config()))


def services_of(client: Any) -> Services:
    return client.server.app[SERVICES]
