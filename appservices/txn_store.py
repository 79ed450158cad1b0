"""Transaction ids already handled, kept in SQLite so that a restart does not replay them."""

from __future__ import annotations

import sqlite3
import time


class TransactionStore:
    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS handled_txns (txn_id TEXT PRIMARY KEY, handled_at INTEGER)"
        )
        self._db.commit()

    def seen(self, txn_id: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM handled_txns WHERE txn_id = ?", (txn_id,)).fetchone() is not None
        )

    def mark(self, txn_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO handled_txns (txn_id, handled_at) VALUES (?, ?)",
            (txn_id, int(time.time() * 1000)),
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()
