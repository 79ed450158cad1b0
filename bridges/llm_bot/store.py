"""The bot's own SQLite database: the messages it has seen (text, and the embedding vector),
per-room settings, token usage for the budgets, and a few flags (DM rooms, threads it started,
notices already given). Each write is one transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL,
    thread_root TEXT,
    from_bot INTEGER NOT NULL DEFAULT 0,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS messages_room_ts ON messages (room_id, ts);
CREATE TABLE IF NOT EXISTS room_settings (
    room_id TEXT PRIMARY KEY,
    overrides TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS room_flags (
    room_id TEXT NOT NULL,
    flag TEXT NOT NULL,
    PRIMARY KEY (room_id, flag)
);
CREATE TABLE IF NOT EXISTS bot_threads (
    room_id TEXT NOT NULL,
    root_event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, root_event_id)
);
CREATE TABLE IF NOT EXISTS usage (
    day TEXT NOT NULL,
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (day, scope, key)
);
"""


COLUMNS = "event_id, room_id, sender, body, ts, thread_root, from_bot"


@dataclass(frozen=True)
class StoredMessage:
    event_id: str
    room_id: str
    sender: str
    body: str
    ts: int
    thread_root: str | None
    from_bot: bool


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


class BotStore:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    # -- messages ---------------------------------------------------------------------------------

    def upsert_message(self, message: StoredMessage, vector: bytes | None) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO messages (event_id, room_id, sender, body, ts, thread_root, from_bot, vector)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET"
                " body = excluded.body, vector = excluded.vector",
                (
                    message.event_id,
                    message.room_id,
                    message.sender,
                    message.body,
                    message.ts,
                    message.thread_root,
                    int(message.from_bot),
                    vector,
                ),
            )

    def has_message(self, event_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM messages WHERE event_id = ?", (event_id,)).fetchone() is not None
        )

    def get_message(self, event_id: str) -> StoredMessage | None:
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM messages WHERE event_id = ?",
            (event_id,),
        ).fetchone()
        return _message(row) if row else None

    def delete_message(self, event_id: str) -> str | None:
        """Forget a message (redacted or purged); returns its room id if it was known."""
        with self._db:
            row = self._db.execute("SELECT room_id FROM messages WHERE event_id = ?", (event_id,)).fetchone()
            self._db.execute("DELETE FROM messages WHERE event_id = ?", (event_id,))
        return str(row[0]) if row else None

    def set_vector(self, event_id: str, body: str, vector: bytes) -> bool:
        """Attach the embedding of `body`; False if the message is gone or was edited since."""
        with self._db:
            cursor = self._db.execute(
                "UPDATE messages SET vector = ? WHERE event_id = ? AND body = ?", (vector, event_id, body)
            )
        return cursor.rowcount == 1

    def delete_room(self, room_id: str) -> list[str]:
        """Forget everything of a room the bot left; returns the forgotten event ids."""
        with self._db:
            rows = self._db.execute("SELECT event_id FROM messages WHERE room_id = ?", (room_id,)).fetchall()
            self._db.execute("DELETE FROM messages WHERE room_id = ?", (room_id,))
            self._db.execute("DELETE FROM bot_threads WHERE room_id = ?", (room_id,))
            self._db.execute("DELETE FROM room_flags WHERE room_id = ?", (room_id,))
        return [str(r[0]) for r in rows]

    def delete_older_than(self, ts: int) -> list[tuple[str, str]]:
        with self._db:
            rows = self._db.execute("SELECT event_id, room_id FROM messages WHERE ts < ?", (ts,)).fetchall()
            self._db.execute("DELETE FROM messages WHERE ts < ?", (ts,))
        return [(str(e), str(r)) for e, r in rows]

    def recent_messages(
        self, room_id: str, limit: int, thread_root: str | None = None
    ) -> list[StoredMessage]:
        """The last `limit` messages of the room's main timeline, or of one thread (root included)."""
        if thread_root is None:
            rows = self._db.execute(
                "SELECT event_id, room_id, sender, body, ts, thread_root, from_bot FROM messages"
                " WHERE room_id = ? AND thread_root IS NULL ORDER BY ts DESC, rowid DESC LIMIT ?",
                (room_id, limit),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT event_id, room_id, sender, body, ts, thread_root, from_bot FROM messages"
                " WHERE room_id = ? AND (thread_root = ? OR event_id = ?)"
                " ORDER BY ts DESC, rowid DESC LIMIT ?",
                (room_id, thread_root, thread_root, limit),
            ).fetchall()
        return [_message(r) for r in reversed(rows)]

    def vectors(self) -> list[tuple[str, str, bytes]]:
        """(room id, event id, vector) of every embedded message: the index is built from these."""
        rows = self._db.execute(
            "SELECT room_id, event_id, vector FROM messages WHERE vector IS NOT NULL"
        ).fetchall()
        return [(str(r), str(e), bytes(v)) for r, e, v in rows]

    def count_messages(self, room_id: str) -> int:
        return int(
            self._db.execute("SELECT COUNT(*) FROM messages WHERE room_id = ?", (room_id,)).fetchone()[0]
        )

    # -- settings and flags ---------------------------------------------------------------------

    def get_room_settings(self, room_id: str) -> dict[str, Any]:
        row = self._db.execute("SELECT overrides FROM room_settings WHERE room_id = ?", (room_id,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def room_settings_ts(self, room_id: str) -> int | None:
        row = self._db.execute(
            "SELECT updated_ts FROM room_settings WHERE room_id = ?", (room_id,)
        ).fetchone()
        return int(row[0]) if row else None

    def set_room_settings(
        self, room_id: str, overrides: dict[str, Any], updated_by: str, updated_ts: int | None = None
    ) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO room_settings (room_id, overrides, updated_by, updated_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (room_id) DO UPDATE SET overrides = excluded.overrides,"
                " updated_by = excluded.updated_by, updated_ts = excluded.updated_ts",
                (room_id, json.dumps(overrides), updated_by, updated_ts or int(time.time() * 1000)),
            )

    def has_flag(self, room_id: str, flag: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM room_flags WHERE room_id = ? AND flag = ?", (room_id, flag)
        ).fetchone()
        return row is not None

    def set_flag(self, room_id: str, flag: str) -> bool:
        """Set a flag; True if it was not set before (so "say it once" is one call)."""
        with self._db:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO room_flags (room_id, flag) VALUES (?, ?)", (room_id, flag)
            )
        return cursor.rowcount == 1

    def clear_flag(self, room_id: str, flag: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM room_flags WHERE room_id = ? AND flag = ?", (room_id, flag))

    def add_bot_thread(self, room_id: str, root_event_id: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO bot_threads (room_id, root_event_id) VALUES (?, ?)",
                (room_id, root_event_id),
            )

    def is_bot_thread(self, room_id: str, root_event_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM bot_threads WHERE room_id = ? AND root_event_id = ?", (room_id, root_event_id)
        ).fetchone()
        return row is not None

    # -- token budgets ----------------------------------------------------------------------------

    def add_usage(self, user_id: str, room_id: str, tokens: int) -> None:
        day = today()
        with self._db:
            for scope, key in (("user", user_id), ("room", room_id)):
                self._db.execute(
                    "INSERT INTO usage (day, scope, key, tokens) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (day, scope, key) DO UPDATE SET tokens = tokens + excluded.tokens",
                    (day, scope, key, tokens),
                )

    def usage_today(self, scope: str, key: str) -> int:
        row = self._db.execute(
            "SELECT tokens FROM usage WHERE day = ? AND scope = ? AND key = ?", (today(), scope, key)
        ).fetchone()
        return int(row[0]) if row else 0


def _message(row: Any) -> StoredMessage:
    event_id, room_id, sender, body, ts, thread_root, from_bot = row
    return StoredMessage(
        str(event_id), str(room_id), str(sender), str(body), int(ts), thread_root, bool(from_bot)
    )
