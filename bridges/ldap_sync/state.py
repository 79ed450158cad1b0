"""The bridge's own SQLite file: which room each unit/group became and which accounts the sync
manages (so a leaver is recognised once they are gone from the directory). The homeserver stays
the truth: mappings are verified against it on every run."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    key TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    dn TEXT NOT NULL,
    first_seen_ts INTEGER NOT NULL,
    deactivated_ts INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ts INTEGER NOT NULL,
    finished_ts INTEGER,
    actions INTEGER,
    errors INTEGER
);
"""


def _now() -> int:
    return int(time.time() * 1000)


class BridgeState:
    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path))
        self.db.executescript(SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def rooms(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, room_id FROM rooms").fetchall())

    def set_room(self, key: str, room_id: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO rooms (key, room_id, created_ts) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET room_id = excluded.room_id",
                (key, room_id, _now()),
            )

    def forget_room(self, key: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM rooms WHERE key = ?", (key,))

    def managed_users(self) -> dict[str, str]:
        """Accounts the sync manages and has not deactivated: user id -> last known DN."""
        rows = self.db.execute("SELECT user_id, dn FROM users WHERE deactivated_ts IS NULL").fetchall()
        return dict(rows)

    def manage_users(self, users: dict[str, str]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO users (user_id, dn, first_seen_ts) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET dn = excluded.dn, deactivated_ts = NULL",
                [(uid, dn, _now()) for uid, dn in users.items()],
            )

    def mark_deactivated(self, user_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE users SET deactivated_ts = ? WHERE user_id = ?", (_now(), user_id))

    def start_run(self) -> int:
        with self.db:
            cur = self.db.execute("INSERT INTO runs (started_ts) VALUES (?)", (_now(),))
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, actions: int, errors: int) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET finished_ts = ?, actions = ?, errors = ? WHERE id = ?",
                (_now(), actions, errors, run_id),
            )
