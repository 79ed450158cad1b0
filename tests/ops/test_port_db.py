"""`homeserver port-db`: a SQLite server's rooms, messages, media rows and search index copied
into PostgreSQL; the server started on PostgreSQL serves them and takes new writes (sequences
and stream positions continue after the copied ids). Interrupted ports resume without
duplicates; a non-empty target and bad arguments are refused."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from homeserver.config import load_config
from homeserver.storage.port_db import port
from synapse_compat_tests.client import DEFAULT_PASSWORD, MatrixClient
from synapse_compat_tests.launcher import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    LaunchedServer,
    PostgresUnavailable,
    create_database,
    drop_database,
    launch,
)
from tests.ops.helpers import Site, check_site, homeserver, populate, send


@pytest.fixture
def pg_db(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"port_{abs(hash(request.node.name)) % 10**8}"
    try:
        create_database(name)
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    yield name
    drop_database(name)


@pytest.fixture(scope="module")
def sqlite_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LaunchedServer, Site]]:
    server = launch("sqlite", tmp_path_factory.mktemp("sqlite-site"))
    site = populate(server, messages=60)
    # A report: the reports table has an identity column on PostgreSQL.
    status, body, _ = site.client(server).post(
        f"/_matrix/client/v3/rooms/{site.room_id}/report/{site.events[1]}", {"reason": "spam"}
    )
    assert status == 200, body
    server.stop()  # port-db copies a stopped server's database
    yield server, site


def _dsn(db: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def _pg_database(server: LaunchedServer, db: str) -> dict[str, object]:
    return {"name": "psycopg2", "args": {"user": PG_USER, "host": PG_HOST, "port": PG_PORT, "database": db}}


def test_port_then_serve_from_postgres(
    sqlite_site: tuple[LaunchedServer, Site], pg_db: str, tmp_path: Path
) -> None:
    server, site = sqlite_site
    config = server.workdir / "homeserver.yaml"
    result = homeserver("port-db", "--config", str(config), "--postgres", _dsn(pg_db), "--batch-size", "25")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "events: 25/" in out and "rows" in out, out  # progress per batch
    assert "MISMATCH" not in out and "every table's row count matches" in out
    assert "event_search" in out and "sequence" in out

    # The same media store and signing key, the database now PostgreSQL.
    overrides = {
        "database": _pg_database(server, pg_db),
        "media_store_path": server.config["media_store_path"],
        "signing_key_path": str(server.workdir / "data" / "signing.key"),
    }
    on_pg = launch("sqlite", tmp_path / "pg-server", overrides=overrides)
    try:
        check_site(site, on_pg)
        # New writes continue the streams after the copied positions.
        last_old = site.events[-1]
        new_event = send(site, on_pg, "written on PostgreSQL", "pg1")
        client = site.client(on_pg)
        status, body, _ = client.get(
            f"/_matrix/client/v3/rooms/{site.room_id}/messages", params={"dir": "b", "limit": 2}
        )
        assert status == 200, body
        assert [e["event_id"] for e in body["chunk"]] == [new_event, last_old]
        # An identity column continues too (a second report gets a fresh id).
        status, body, _ = client.post(
            f"/_matrix/client/v3/rooms/{site.room_id}/report/{site.events[2]}", {"reason": "again"}
        )
        assert status == 200, body
        # A new login and a sync on the new database.
        status, body, _ = MatrixClient(on_pg.base_url).post(
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "bob"},
                "password": DEFAULT_PASSWORD,
            },
        )
        assert status == 200, body
        status, body, _ = client.get("/_matrix/client/v3/sync", params={"timeout": "0"})
        assert status == 200 and site.room_id in body["rooms"]["join"], body
    finally:
        on_pg.process.terminate()
        on_pg.process.wait(timeout=30)


class _Interrupted(Exception):
    pass


def test_interrupted_port_resumes_without_duplicates(
    sqlite_site: tuple[LaunchedServer, Site], pg_db: str
) -> None:
    server, _ = sqlite_site
    config = load_config(str(server.workdir / "homeserver.yaml"))
    target_raw = {"database": _pg_database(server, pg_db)}
    (server.workdir / "target.yaml").write_text(yaml.safe_dump({**server.config, **target_raw}))
    target = load_config(str(server.workdir / "target.yaml")).database
    lines: list[str] = []

    def stop_in_events(line: str) -> None:
        lines.append(line)
        if line.startswith("  events: 20/"):  # mid-table: 2 of several batches committed
            raise _Interrupted

    with pytest.raises(_Interrupted):
        asyncio.run(port(config.database.sqlite_path, target, batch_size=10, progress=stop_in_events))

    resumed = homeserver(
        "port-db",
        "--config",
        str(server.workdir / "homeserver.yaml"),
        "--postgres",
        _dsn(pg_db),
        "--batch-size",
        "10",
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming:" in resumed.stdout
    # It went on from row 20 of events, not from the start.
    assert "  events: 30/" in resumed.stdout and "  events: 10/" not in resumed.stdout, resumed.stdout
    assert "every table's row count matches" in resumed.stdout

    # Running again when everything is copied changes nothing.
    again = homeserver(
        "port-db", "--config", str(server.workdir / "homeserver.yaml"), "--postgres", _dsn(pg_db)
    )
    assert again.returncode == 0, again.stderr
    assert "rows copied" in again.stdout and "done: 0 rows copied" in again.stdout, again.stdout


def test_refuses_a_database_with_data(
    sqlite_site: tuple[LaunchedServer, Site], pg_db: str, tmp_path: Path
) -> None:
    server, _ = sqlite_site
    # A server that ran on the PostgreSQL database (it registered a user there).
    pg_server = launch("sqlite", tmp_path / "pg", overrides={"database": _pg_database(server, pg_db)})
    try:
        populate(pg_server, messages=1)
    finally:
        pg_server.process.terminate()
        pg_server.process.wait(timeout=30)
    result = homeserver(
        "port-db", "--config", str(server.workdir / "homeserver.yaml"), "--postgres", _dsn(pg_db)
    )
    assert result.returncode == 1 and "already has data" in result.stderr, result.stderr


def test_bad_arguments(sqlite_site: tuple[LaunchedServer, Site], tmp_path: Path) -> None:
    server, _ = sqlite_site
    config = str(server.workdir / "homeserver.yaml")
    result = homeserver("port-db", "--config", config, "--postgres", "mysql://x/y")
    assert result.returncode == 2 and "postgresql://" in result.stderr, result.stderr
    result = homeserver("port-db", "--config", config, "--postgres", "sqlite:///tmp/x.db")
    assert result.returncode == 2, result.stderr
    result = homeserver(
        "port-db", "--config", config, "--postgres", _dsn("x"), "--sqlite-database", str(tmp_path / "none.db")
    )
    assert result.returncode == 1 and "cannot open SQLite database" in result.stderr, result.stderr
    # A database behind on migrations.
    behind = tmp_path / "behind.db"
    with (
        sqlite3.connect(server.config["database"]["args"]["database"]) as src,
        sqlite3.connect(behind) as dst,
    ):
        src.backup(dst)
    with sqlite3.connect(behind) as conn:
        conn.execute(
            "DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)"
        )
    result = homeserver(
        "port-db", "--config", config, "--postgres", _dsn("x"), "--sqlite-database", str(behind)
    )
    assert result.returncode == 1 and "homeserver migrate" in result.stderr, result.stderr


def test_port_error_is_raised_for_unreachable_postgres(sqlite_site: tuple[LaunchedServer, Site]) -> None:
    server, _ = sqlite_site
    result = homeserver(
        "port-db",
        "--config",
        str(server.workdir / "homeserver.yaml"),
        "--postgres",
        "postgresql://nobody@127.0.0.1:1/x",
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: cannot connect to PostgreSQL"), result.stderr
