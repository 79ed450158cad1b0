"""What an operator meets: one-line start-up errors, the schema-newer refusal, generate-config,
log_config, /health and the start-up line. Each test runs the real `homeserver` process."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from synapse_compat_tests.client import MatrixClient, register_user
from synapse_compat_tests.launcher import free_port, launch


def _homeserver(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def _config(tmp_path: Path, port: int | None = None, **extra: Any) -> Path:
    data = tmp_path / "data"
    raw = {
        "server_name": "localhost",
        "data_dir": str(data),
        "listeners": [
            {
                "port": port or free_port(),
                "bind_addresses": ["127.0.0.1"],
                "resources": [{"names": ["client"]}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
        **extra,
    }
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str, code: int = 1) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, result.stderr


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _homeserver("run", "--config", str(_config(tmp_path, port)))
    _assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    config = _config(tmp_path, data_dir=str(blocker / "data"))
    raw = yaml.safe_load(config.read_text())
    raw["database"]["args"]["database"] = str(blocker / "data" / "homeserver.db")
    config.write_text(yaml.safe_dump(raw))
    _assert_one_line_error(_homeserver("run", "--config", str(config)), "Not a directory")
    _assert_one_line_error(_homeserver("migrate", "--config", str(config)), "cannot open SQLite database")


def test_unusable_media_store_and_key_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    media = _config(tmp_path, media_store_path=str(blocker / "media"))
    _assert_one_line_error(_homeserver("run", "--config", str(media)), "media_store_path: cannot write to")
    key = _config(tmp_path, signing_key_path=str(blocker / "example.signing.key"))
    _assert_one_line_error(_homeserver("run", "--config", str(key)), "signing_key_path:")


def test_schema_newer_than_code_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path)
    migrated = _homeserver("migrate", "--config", str(config))
    assert migrated.returncode == 0, migrated.stderr
    assert "applied" in migrated.stdout
    # What a newer release would leave behind.
    db = sqlite3.connect(tmp_path / "data" / "homeserver.db")
    with db:
        db.execute(
            "INSERT INTO schema_migrations (version, name, applied_ts) VALUES (9999, 'from_the_future', 1)"
        )
    db.close()
    for command in ("run", "migrate"):
        result = _homeserver(command, "--config", str(config))
        # 2: retrying cannot help (the systemd unit does not restart on it).
        _assert_one_line_error(result, "the database schema is newer than this homeserver", code=2)
        assert "9999_from_the_future" in result.stderr


def test_generate_config_has_secrets_and_absolute_paths(tmp_path: Path) -> None:
    first = _homeserver("generate-config", "--server-name", "example.org", "-o", "a.yaml", cwd=tmp_path)
    second = _homeserver("generate-config", "--server-name", "example.org", "-o", "b.yaml", cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    a = yaml.safe_load((tmp_path / "a.yaml").read_text())
    b = yaml.safe_load((tmp_path / "b.yaml").read_text())
    assert len(a["registration_shared_secret"]) >= 32
    assert a["registration_shared_secret"] != b["registration_shared_secret"]
    assert a["data_dir"] == str(tmp_path / "data")
    for key in ("signing_key_path", "media_store_path"):
        assert Path(a[key]).is_absolute(), key
    assert Path(a["database"]["args"]["database"]).is_absolute()
    # The secret is readable by its owner only.
    assert stat.S_IMODE((tmp_path / "a.yaml").stat().st_mode) == 0o600
    # It loads, and the generated file starts a server from any working directory.
    assert _homeserver("migrate", "--config", str(tmp_path / "a.yaml"), cwd="/").returncode == 0


def test_log_config_health_and_startup_line(tmp_path: Path) -> None:
    log_file = tmp_path / "homeserver.log"
    log_config = tmp_path / "log.config"
    # Synapse's generated log.config shape (its filter class and %(request)s format).
    log_config.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "formatters": {
                    "precise": {
                        "format": "%(asctime)s - %(name)s - %(levelname)s - %(request)s - %(message)s"
                    }
                },
                "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter", "request": ""}},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "formatter": "precise",
                        "filename": str(log_file),
                        "filters": ["context"],
                    }
                },
                "root": {"level": "INFO", "handlers": ["file"]},
                "disable_existing_loggers": False,
            }
        )
    )
    server = launch("sqlite", tmp_path, overrides={"log_config": str(log_config), "enable_metrics": True})
    try:
        with urllib.request.urlopen(server.base_url + "/health", timeout=10) as resp:
            assert resp.status == 200
            assert resp.read() == b"OK"
        register_user(MatrixClient(server.base_url), server.shared_secret)
    finally:
        server.stop()
    text = log_file.read_text()
    assert "Logging error" not in server.stderr_path.read_text()
    # The launcher lists client, federation, media, metrics; federation brings the key API along.
    line = next(line for line in text.splitlines() if "listening on" in line)
    assert "(client, federation, keys, openid, media, metrics, health)" in line
    assert "listed but not served" not in line
    assert "stopped cleanly" in text


def _messages(client: MatrixClient, room_id: str) -> list[str]:
    status, body, _ = client.get(
        f"/_matrix/client/v3/rooms/{room_id}/messages", params={"dir": "b", "limit": "50"}
    )
    assert status == 200, body
    return [e["content"].get("body") for e in body["chunk"] if e["type"] == "m.room.message"]


def test_sqlite_online_backup_restores(tmp_path: Path) -> None:
    """docs/operations.md: back up the SQLite database while the server runs, restore, start."""
    server = launch("sqlite", tmp_path / "live")
    backups: list[Path] = []
    try:
        _, token, _ = register_user(MatrixClient(server.base_url), server.shared_secret)
        client = MatrixClient(server.base_url, token)
        status, body, _ = client.post("/_matrix/client/v3/createRoom", {"preset": "private_chat"})
        assert status == 200, body
        room_id = body["room_id"]
        for i in range(5):
            status, _, _ = client.put(
                f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/b{i}",
                {"msgtype": "m.text", "body": f"b{i}"},
            )
            assert status == 200
        live_db = tmp_path / "live" / "data" / "homeserver.db"
        # The backup API (what `sqlite3 homeserver.db ".backup copy.db"` uses), while serving.
        api_copy = tmp_path / "api-backup.db"
        src, dst = sqlite3.connect(live_db), sqlite3.connect(api_copy)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        backups.append(api_copy)
        vacuum_copy = tmp_path / "vacuum-backup.db"
        conn = sqlite3.connect(live_db)
        conn.execute("VACUUM INTO ?", (str(vacuum_copy),))
        conn.close()
        backups.append(vacuum_copy)
        if shutil.which("sqlite3"):
            cli_copy = tmp_path / "cli-backup.db"
            subprocess.run(["sqlite3", str(live_db), f".backup '{cli_copy}'"], check=True, timeout=60)
            backups.append(cli_copy)
    finally:
        server.stop()
    for index, backup in enumerate(backups):
        restored = launch(
            "sqlite",
            tmp_path / f"restored{index}",
            overrides={"database": {"name": "sqlite3", "args": {"database": str(backup)}}},
        )
        try:
            assert _messages(MatrixClient(restored.base_url, token), room_id)[:5] == [
                "b4",
                "b3",
                "b2",
                "b1",
                "b0",
            ]
        finally:
            restored.stop()
