"""PostgreSQL going away: one-line start-up errors, 503s while serving, recovery on its own.

These tests stop and start PostgreSQL, so they run their OWN cluster (tests/pg_cluster.py) and
never touch the shared server on 5432. Without the binaries they skip (fail under CI=true).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from synapse_compat_tests.client import MatrixClient, register_user
from synapse_compat_tests.launcher import free_port, launch
from tests.pg_cluster import DB_NAME, Cluster, throwaway_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as pg:
        yield pg


def _run_server_once(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver", "run", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _write_config(path: Path, database: dict[str, Any], data_dir: Path) -> Path:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "server_name": "localhost",
                "data_dir": str(data_dir),
                "listeners": [
                    {
                        "port": free_port(),
                        "bind_addresses": ["127.0.0.1"],
                        "resources": [{"names": ["client"]}],
                    }
                ],
                "database": database,
            }
        )
    )
    return path


def test_missing_database_is_one_line(cluster: Cluster, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "hs.yaml", cluster.database_config("no_such_db"), tmp_path / "data")
    result = _run_server_once(config)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot connect to PostgreSQL")
    assert 'database "no_such_db" does not exist' in result.stderr
    assert "Traceback" not in result.stderr


def _send(client: MatrixClient, room_id: str, txn: str) -> Any:
    return client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": txn}
    )


def test_postgres_restart_gives_503_then_recovers(cluster: Cluster, tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path, overrides={"database": cluster.database_config()})
    try:
        _, token, _ = register_user(MatrixClient(server.base_url), server.shared_secret)
        client = MatrixClient(server.base_url, token)
        status, body, _ = client.post("/_matrix/client/v3/createRoom", {"preset": "private_chat"})
        assert status == 200, body
        room_id = body["room_id"]
        assert _send(client, room_id, "before").status == 200

        cluster.stop()
        try:
            down = _send(client, room_id, "while-down")
            assert down.status == 503, down.describe()
            assert down.body["errcode"] == "M_UNKNOWN"
            assert down.header("Retry-After")
            status, body, _ = client.get(
                "/_matrix/client/v3/rooms/" + room_id + "/messages", params={"dir": "b"}
            )
            assert status == 503, body
            # The server stays up while the database is away.
            assert server.process.poll() is None
        finally:
            cluster.start()

        # A client retries after a 503 (as Retry-After says); the first tries may still meet
        # connections the restart broke, then the pool reconnects by itself.
        deadline = time.monotonic() + 30
        while True:
            response = _send(client, room_id, "after")
            if response.status == 200 or time.monotonic() > deadline:
                break
            assert response.status == 503, response.describe()
            time.sleep(0.2)  # client back-off
        assert response.status == 200, response.describe()
        for i in range(5):
            assert _send(client, room_id, f"after-{i}").status == 200
        status, body, _ = client.get("/_matrix/client/v3/sync")
        assert status == 200, body
        bodies = [e["content"].get("body") for e in body["rooms"]["join"][room_id]["timeline"]["events"]]
        assert "after-4" in bodies and "before" in bodies
    finally:
        server.stop()
    stderr = server.stderr_path.read_text()
    assert "Traceback" not in stderr, stderr[-4000:]


def test_postgres_down_at_start_is_one_line(cluster: Cluster, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "hs.yaml", cluster.database_config(), tmp_path / "data")
    cluster.stop()
    try:
        result = _run_server_once(config)
    finally:
        cluster.start()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot connect to PostgreSQL at 127.0.0.1:{cluster.port}/"), (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_pg_dump_and_restore(cluster: Cluster, tmp_path: Path) -> None:
    """docs/operations.md: pg_dump -Fc while serving, restore into a new database, start on it."""
    server = launch("sqlite", tmp_path / "live", overrides={"database": cluster.database_config()})
    dump = tmp_path / "homeserver.dump"
    try:
        _, token, _ = register_user(MatrixClient(server.base_url), server.shared_secret)
        client = MatrixClient(server.base_url, token)
        status, body, _ = client.post("/_matrix/client/v3/createRoom", {"preset": "private_chat"})
        assert status == 200, body
        room_id = body["room_id"]
        for i in range(3):
            assert _send(client, room_id, f"dumped-{i}").status == 200
        pg = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
        subprocess.run(
            [str(cluster.bindir / "pg_dump"), *pg, "-Fc", "-f", str(dump), DB_NAME],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        server.stop()
    cluster.create_database("restored")
    subprocess.run(
        [str(cluster.bindir / "pg_restore"), *pg, "--no-owner", "-d", "restored", str(dump)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    restored = launch(
        "sqlite", tmp_path / "restored", overrides={"database": cluster.database_config("restored")}
    )
    try:
        status, body, _ = MatrixClient(restored.base_url, token).get(
            f"/_matrix/client/v3/rooms/{room_id}/messages", params={"dir": "b", "limit": "10"}
        )
        assert status == 200, body
        bodies = [e["content"].get("body") for e in body["chunk"] if e["type"] == "m.room.message"]
        assert bodies[:3] == ["dumped-2", "dumped-1", "dumped-0"]
    finally:
        restored.stop()
