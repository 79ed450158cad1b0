"""`homeserver backup` while the server serves and writes, `homeserver restore` into a fresh
directory, and a server started on the restored data serving every acknowledged event, the
media and the same signing key. Plus the refusals (non-empty target, incomplete backup, other
server, existing database without --force)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_compat_tests.client import MatrixClient
from synapse_compat_tests.launcher import (
    LaunchedServer,
    PostgresUnavailable,
    create_database,
    drop_database,
    launch,
)
from tests.ops.helpers import check_site, homeserver, populate, send


def _write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def _restored_overrides(base: dict[str, Any], where: Path) -> dict[str, Any]:
    """The config of a fresh installation whose data lives in `where` (same server_name)."""
    config = dict(base)
    config["media_store_path"] = str(where / "media_store")
    config["signing_key_path"] = str(where / "signing.key")
    if config["database"]["name"] == "sqlite3":
        config["database"] = {"name": "sqlite3", "args": {"database": str(where / "homeserver.db")}}
    return config


def _server_key_ids(server: LaunchedServer) -> set[str]:
    status, body, _ = MatrixClient(server.base_url).get("/_matrix/key/v2/server")
    assert status == 200, body
    return set(body["verify_keys"])


def _backup_while_writing(server: LaunchedServer, site: Any, target: Path) -> tuple[list[str], list[str]]:
    """Back up while another thread keeps sending; returns (acknowledged before the backup
    started, acknowledged while it ran)."""
    before = list(site.events)
    stop = threading.Event()
    during: list[str] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            during.append(send(site, server, f"during backup {n}", f"d{n}"))
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = homeserver(
            "backup", "--config", str(server.workdir / "homeserver.yaml"), "--to", str(target)
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert "backup complete" in result.stdout and "media store" in result.stdout, result.stdout
    assert during, "nothing was written while the backup ran"
    return before, during


def _restore_and_start(
    server: LaunchedServer, backup_dir: Path, fresh: Path, overrides: dict[str, Any]
) -> LaunchedServer:
    fresh.mkdir(parents=True, exist_ok=True)
    config = _restored_overrides(server.config, fresh / "restored")
    config.update(overrides)
    result = homeserver(
        "restore", "--config", str(_write_config(fresh / "restore.yaml", config)), "--from", str(backup_dir)
    )
    assert result.returncode == 0, result.stderr
    assert "restore complete" in result.stdout
    keep = {k: config[k] for k in ("database", "media_store_path", "signing_key_path")}
    return launch(server.backend, fresh / "hs", overrides=keep)


def test_sqlite_backup_while_serving_and_restore(tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path / "original")
    try:
        site = populate(server)
        original_keys = _server_key_ids(server)
        before, during = _backup_while_writing(server, site, tmp_path / "backup")
    finally:
        server.stop()
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["engine"] == "sqlite" and manifest["media_files"] == 2 and manifest["signing_key"]
    # No WAL beside the copy: one self-contained file.
    assert not (tmp_path / "backup" / "homeserver.db-wal").exists()

    restored = _restore_and_start(server, tmp_path / "backup", tmp_path / "fresh", {})
    try:
        check_site(site, restored, before)
        # Events acknowledged while the backup ran are there up to the snapshot, none half-way:
        # what is present is a prefix of what was sent.
        client = site.client(restored)
        status, body, _ = client.get(
            f"/_matrix/client/v3/rooms/{site.room_id}/messages", params={"dir": "b", "limit": 1000}
        )
        assert status == 200, body
        present = {e["event_id"] for e in body["chunk"]}
        flags = [e in present for e in during]
        assert flags == sorted(flags, reverse=True), "the backup is not one snapshot"
        assert _server_key_ids(restored) == original_keys
        # The restored server takes new writes.
        send(site, restored, "after restore", "after")
        check_site(site, restored, [*before, site.events[-1]])
    finally:
        restored.stop()


def test_postgres_backup_while_serving_and_restore(tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    try:
        server = launch("postgres", tmp_path / "original")
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    restored_db = f"restored_{server.db_name}"
    try:
        site = populate(server)
        before, _ = _backup_while_writing(server, site, tmp_path / "backup")
    finally:
        server.stop()
    create_database(restored_db)
    try:
        database = json.loads(json.dumps(server.config["database"]))
        database["args"]["database"] = restored_db
        restored = _restore_and_start(server, tmp_path / "backup", tmp_path / "fresh", {"database": database})
        try:
            check_site(site, restored, before)
            send(site, restored, "after restore", "after")
        finally:
            restored.process.terminate()
            restored.process.wait(timeout=30)
        # A second restore into the now non-empty database is refused without --force.
        config = tmp_path / "fresh" / "restore.yaml"
        again = homeserver("restore", "--config", str(config), "--from", str(tmp_path / "backup"))
        assert again.returncode == 1 and "is not empty" in again.stderr, again.stderr
    finally:
        drop_database(restored_db)


def test_refusals(tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path / "original")
    config = server.workdir / "homeserver.yaml"
    try:
        populate(server, messages=2)
        occupied = tmp_path / "occupied"
        occupied.mkdir()
        (occupied / "x").write_text("x")
        result = homeserver("backup", "--config", str(config), "--to", str(occupied))
        assert result.returncode == 1 and "not empty" in result.stderr
        result = homeserver("backup", "--config", str(config), "--to", str(occupied / "x"))
        assert result.returncode == 1 and "not a directory" in result.stderr, result.stderr
        blocked = tmp_path / "blocked"
        blocked.mkdir(mode=0o500)
        result = homeserver("backup", "--config", str(config), "--to", str(blocked / "sub"))
        if os.geteuid() != 0:  # root writes anywhere
            assert result.returncode == 1 and result.stderr.startswith("error: Permission denied"), (
                result.stderr
            )
            assert "Traceback" not in result.stderr
        result = homeserver("backup", "--config", str(config), "--to", str(tmp_path / "ok"))
        assert result.returncode == 0, result.stderr
    finally:
        server.stop()

    # An existing database is not replaced without --force, and is kept aside with it.
    result = homeserver("restore", "--config", str(config), "--from", str(tmp_path / "ok"))
    assert result.returncode == 1 and "--force" in result.stderr, result.stderr
    result = homeserver("restore", "--config", str(config), "--from", str(tmp_path / "ok"), "--force")
    assert result.returncode == 0, result.stderr
    assert list((server.workdir / "data").glob("homeserver.db.pre-restore-*"))

    # A directory without its manifest is an incomplete backup.
    partial = tmp_path / "partial"
    shutil.copytree(tmp_path / "ok", partial)
    (partial / "manifest.json").unlink()
    result = homeserver("restore", "--config", str(config), "--from", str(partial), "--force")
    assert result.returncode == 1 and "not a complete backup" in result.stderr

    # Another server's backup.
    other = dict(server.config, server_name="other.example")
    other_config = _write_config(tmp_path / "other.yaml", other)
    result = homeserver("restore", "--config", str(other_config), "--from", str(tmp_path / "ok"), "--force")
    assert result.returncode == 1 and "'localhost'" in result.stderr, result.stderr

    # A SQLite backup into a PostgreSQL config.
    pg = dict(server.config, database={"name": "psycopg2", "args": {"database": "x", "host": "127.0.0.1"}})
    result = homeserver(
        "restore", "--config", str(_write_config(tmp_path / "pg.yaml", pg)), "--from", str(tmp_path / "ok")
    )
    assert result.returncode == 1 and "port-db" in result.stderr, result.stderr
