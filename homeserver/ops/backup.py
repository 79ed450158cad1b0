"""`homeserver backup` and `homeserver restore`: the database, the media store and the signing
key in one directory, with a manifest written last (a directory without it is incomplete).

Order matters: the database first, then media. Media files are written before their database
row, so a media copy taken after the database copy has every file the copy knows about.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homeserver import __version__
from homeserver.storage.backup import BackupError, sqlite_check, sqlite_online_backup

MANIFEST = "manifest.json"
FORMAT = 1
SQLITE_FILE = "homeserver.db"
PG_FILE = "homeserver.dump"
MEDIA_DIR = "media_store"
KEY_FILE = "signing.key"

Progress = Callable[[str], None]


class OpsError(RuntimeError):
    """Something the operator fixes; printed as one line."""


@dataclass(frozen=True)
class BackupResult:
    directory: Path
    manifest: dict[str, Any]


def _pg_env(db: Any) -> dict[str, str]:
    env = dict(os.environ)
    if db.pg_password:
        env["PGPASSWORD"] = db.pg_password
    if db.pg_sslmode:
        env["PGSSLMODE"] = db.pg_sslmode
    return env


def _pg_args(db: Any) -> list[str]:
    args = ["-h", db.pg_host, "-p", str(db.pg_port)]
    if db.pg_user:
        args += ["-U", db.pg_user]
    return args


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OpsError(
            f"`{name}` is not installed (Debian: apt-get install postgresql-client); "
            "see docs/operations.md#postgresql for the manual procedure"
        )
    return path


def _copy_media(source: Path, destination: Path, progress: Progress) -> int:
    """Copy a media tree file by file (files vanish while the server deletes media: skipped),
    leaving out `tmp/` (uploads in progress); files already present are kept (names are unique
    and files never change)."""
    count = 0
    if not source.is_dir():
        return 0
    for root, dirs, files in os.walk(source):
        rel = Path(root).relative_to(source)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d != "tmp"]
        (destination / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            target = destination / rel / name
            if target.exists():
                continue
            try:
                shutil.copy2(Path(root) / name, target)
            except FileNotFoundError:
                continue
            count += 1
            if count % 1000 == 0:
                progress(f"  {count} media files")
    return count


def backup(config: Any, directory: str, progress: Progress = print) -> BackupResult:
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise OpsError(f"{out} is not a directory")
    if out.exists() and any(out.iterdir()):
        raise OpsError(f"{out} is not empty: back up into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    db = config.database
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "homeserver_version": __version__,
        "server_name": config.server_name,
        "engine": db.engine,
        "started_ts": int(time.time() * 1000),
    }
    if db.engine == "sqlite":
        progress(f"database: online backup of {db.sqlite_path}")
        try:
            sqlite_online_backup(db.sqlite_path, str(out / SQLITE_FILE))
            ok, version = sqlite_check(str(out / SQLITE_FILE))
        except BackupError as exc:
            raise OpsError(str(exc)) from exc
        if not ok:
            raise OpsError(f"the copy {out / SQLITE_FILE} failed PRAGMA integrity_check")
        manifest.update(database=SQLITE_FILE, schema_version=version)
    else:
        progress(f"database: pg_dump of {db.pg_host}:{db.pg_port}/{db.pg_database}")
        cmd = [_tool("pg_dump"), *_pg_args(db), "-Fc", "-f", str(out / PG_FILE), db.pg_database or ""]
        result = subprocess.run(cmd, env=_pg_env(db), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise OpsError(f"pg_dump failed: {result.stderr.strip()}")
        manifest.update(database=PG_FILE)
    progress(f"  {(out / manifest['database']).stat().st_size} bytes")

    progress(f"media store: {config.media_store_path}")
    manifest["media_files"] = _copy_media(Path(config.media_store_path), out / MEDIA_DIR, progress)
    progress(f"  {manifest['media_files']} files")

    key = Path(config.signing_key_path)
    if key.exists():
        shutil.copy2(key, out / KEY_FILE)
        os.chmod(out / KEY_FILE, 0o600)
        manifest["signing_key"] = KEY_FILE
        progress(f"signing key: {key}")
    manifest["finished_ts"] = int(time.time() * 1000)
    # Last: its presence says the backup is complete.
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    progress(f"backup complete in {out}")
    return BackupResult(out, manifest)


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise OpsError(f"{directory} has no {MANIFEST}: not a complete backup") from exc
    except (OSError, ValueError) as exc:
        raise OpsError(f"{directory / MANIFEST}: unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise OpsError(f"{directory / MANIFEST}: unknown backup format")
    return manifest


def _move_aside(path: Path, stamp: str, progress: Progress) -> None:
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{path}{suffix}")
        if old.exists():
            kept = Path(f"{old}.pre-restore-{stamp}")
            old.rename(kept)
            progress(f"  moved {old} to {kept}")


def restore(
    config: Any, directory: str, *, force: bool = False, progress: Progress = print
) -> dict[str, Any]:
    """Put a backup back. The server must be stopped. Without `force` nothing existing is
    replaced; with it the old SQLite files and signing key are kept beside as *.pre-restore-*."""
    src = Path(directory)
    manifest = _read_manifest(src)
    if manifest["server_name"] != config.server_name:
        raise OpsError(
            f"the backup is of {manifest['server_name']!r}, the config is for {config.server_name!r}"
        )
    db = config.database
    if manifest["engine"] != db.engine:
        raise OpsError(
            f"the backup is of a {manifest['engine']} database, the config uses {db.engine}: restore "
            "into the same engine (then `homeserver port-db` to move SQLite to PostgreSQL)"
        )
    stamp = time.strftime("%Y%m%d%H%M%S")
    if db.engine == "sqlite":
        _restore_sqlite(src / manifest["database"], Path(db.sqlite_path), force, stamp, progress)
    else:
        _restore_postgres(src / manifest["database"], db, force, progress)

    media = _copy_media(src / MEDIA_DIR, Path(config.media_store_path), progress)
    progress(f"media store: {media} files restored into {config.media_store_path}")

    if manifest.get("signing_key"):
        backup_key, key = src / manifest["signing_key"], Path(config.signing_key_path)
        if key.exists() and not filecmp.cmp(backup_key, key, shallow=False):
            if not force:
                raise OpsError(f"{key} exists and differs from the backup's key; pass --force to replace it")
            key.rename(Path(f"{key}.pre-restore-{stamp}"))
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(backup_key, key)
            os.chmod(key, 0o600)
            progress(f"signing key: {key}")
    progress("restore complete; start the server")
    return manifest


def _restore_sqlite(backup_db: Path, target: Path, force: bool, stamp: str, progress: Progress) -> None:
    try:
        ok, _ = sqlite_check(str(backup_db))
    except BackupError as exc:
        raise OpsError(str(exc)) from exc
    if not ok:
        raise OpsError(f"{backup_db} fails PRAGMA integrity_check: use another backup")
    if target.exists():
        if not force:
            raise OpsError(f"{target} exists; stop the server and pass --force to replace it (it is kept)")
        _move_aside(target, stamp, progress)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(f"{target}.restoring")
    shutil.copy2(backup_db, partial)
    partial.rename(target)  # atomic: never a half-copied database under the real name
    progress(f"database: restored {target}")


def _restore_postgres(dump: Path, db: Any, force: bool, progress: Progress) -> None:
    psql = _tool("psql")
    check = subprocess.run(
        [
            psql,
            *_pg_args(db),
            "-d",
            db.pg_database or "",
            "-tAc",
            "SELECT to_regclass('schema_migrations') IS NOT NULL",
        ],
        env=_pg_env(db),
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise OpsError(f"cannot reach {db.pg_host}:{db.pg_port}/{db.pg_database}: {check.stderr.strip()}")
    cmd = [_tool("pg_restore"), *_pg_args(db), "--no-owner", "-d", db.pg_database or ""]
    if check.stdout.strip() == "t":
        if not force:
            raise OpsError(
                f"the database {db.pg_database} is not empty; restore into a new database or pass --force "
                "(drops and recreates every object of the dump)"
            )
        cmd += ["--clean", "--if-exists"]
    progress(f"database: pg_restore into {db.pg_host}:{db.pg_port}/{db.pg_database}")
    result = subprocess.run([*cmd, str(dump)], env=_pg_env(db), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise OpsError(f"pg_restore failed: {result.stderr.strip()[-2000:]}")
