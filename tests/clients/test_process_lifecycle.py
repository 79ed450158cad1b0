"""The server process: clean stop on SIGTERM, durability after kill -9, metrics, config errors."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

from synapse_compat_tests.client import MatrixClient, register_user
from synapse_compat_tests.launcher import launch


def _send_messages(base_url: str, secret: str, count: int) -> tuple[str, list[str]]:
    _, token, _ = register_user(MatrixClient(base_url), secret)
    client = MatrixClient(base_url, token)
    status, body, _ = client.post("/_matrix/client/v3/createRoom", {"preset": "private_chat"})
    assert status == 200, body
    room_id = body["room_id"]
    event_ids = []
    for i in range(count):
        status, body, _ = client.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{i}",
            {"msgtype": "m.text", "body": str(i)},
        )
        assert status == 200, body
        event_ids.append(body["event_id"])
    return room_id, event_ids


def _stored_event_ids(db_path: Path) -> set[str]:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}
    finally:
        conn.close()


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path, overrides={"enable_metrics": True})
    try:
        _, event_ids = _send_messages(server.base_url, server.shared_secret, 20)
        with urllib.request.urlopen(server.base_url + "/_synapse/metrics") as resp:
            metrics = resp.read().decode()
        assert "synapse_http_server_requests_received_total" in metrics
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        stderr = server.stderr_path.read_text()
        assert "stopped cleanly" in stderr
    finally:
        server.stop()
    assert set(event_ids) <= _stored_event_ids(tmp_path / "data" / "homeserver.db")


def test_acknowledged_events_survive_kill_9(tmp_path: Path) -> None:
    server = launch("sqlite", tmp_path)
    try:
        _, event_ids = _send_messages(server.base_url, server.shared_secret, 30)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    finally:
        server.stop()
    db_path = tmp_path / "data" / "homeserver.db"
    assert set(event_ids) <= _stored_event_ids(db_path)
    # And the server starts again on that database.
    restarted = launch("sqlite", tmp_path)
    restarted.stop()


def test_config_error_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server_name: localhost\nlisteners:\n  - port: abc\n    type: http\n")
    result = subprocess.run(
        [sys.executable, "-m", "homeserver", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "listeners[0].port" in result.stderr
