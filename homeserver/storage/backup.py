"""SQLite copies for `homeserver backup` / `restore`: the online backup API (consistent while
the server writes: one read transaction in WAL mode never blocks the writer) and checks."""

from __future__ import annotations

import sqlite3


class BackupError(RuntimeError):
    pass


def sqlite_online_backup(source: str, destination: str) -> None:
    """Copy the live database `source` into the new file `destination` in one step, so the copy
    is one snapshot (a stepwise copy restarts whenever the server commits in between)."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open SQLite database {source}: {exc}") from exc
    try:
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst, pages=-1)
            # A self-contained file: no -wal beside it.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite backup of {source} failed: {exc}") from exc
    finally:
        src.close()


def sqlite_check(path: str) -> tuple[bool, int | None]:
    """(integrity_check passed, highest applied migration) of a database file."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open SQLite database {path}: {exc}") from exc
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        version = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        return ok, int(version) if version is not None else None
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a homeserver database: {exc}") from exc
    finally:
        conn.close()
