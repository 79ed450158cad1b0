"""Apply schema/NNNN_name.sql migrations in order, once each, recorded in `schema_migrations`.

A migration may have dialect variants `NNNN_name.sqlite.sql` / `NNNN_name.postgres.sql`; the variant
for the running engine wins over the plain file. Each migration runs in its own transaction together
with its version row, so a crash never leaves one half-applied.

The migrations ship inside the package as `homeserver._schema` (setup.py maps it to the top-level
`schema/` folder), so an installed wheel finds them through importlib.resources just as a source
checkout does. Before anything is applied the recorded history is checked against the files:

- a version recorded in the database that this code does not know means a newer release migrated
  it: `SchemaTooNewError`, the server refuses to start (running old code on a newer schema could
  corrupt data);
- an applied migration whose file changed since (sha256 recorded per row) is logged as a warning
  and never re-applied: the database is what it is, and refusing to start over an edited comment
  or a developer's mistake would only take the server down. Rows written by older versions of the
  server have no checksum; it is filled in from the current file the first time.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import re
import time
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from homeserver.storage.database import Database

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")
SCHEMA_PACKAGE = "homeserver._schema"


class SchemaError(RuntimeError):
    """The database schema cannot be used by this code (message is one line for operators)."""


class SchemaTooNewError(SchemaError):
    pass


class SchemaOutdatedError(SchemaError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Traversable

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def read(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def checksum(self) -> str:
        return checksum(self.read())


def checksum(sql: str) -> str:
    """sha256 of the file text with line endings normalised (a CRLF checkout is not an edit)."""
    return hashlib.sha256(sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def schema_dir() -> Traversable:
    """Where the migrations are: $HOMESERVER_SCHEMA_DIR, else the installed `homeserver._schema`
    package, else (a source tree run without installing) the repository's `schema/` folder."""
    override = os.environ.get("HOMESERVER_SCHEMA_DIR")
    if override:
        return Path(override)
    try:
        return importlib.resources.files(SCHEMA_PACKAGE)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "schema"


def discover(dialect: str, directory: Traversable | None = None) -> list[Migration]:
    directory = directory or schema_dir()
    chosen: dict[int, tuple[bool, Migration]] = {}
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        match = _NAME.match(path.name)
        if not match or not path.is_file():
            continue
        version, name, variant = int(match[1]), match[2], match[3]
        if variant and variant != dialect:
            continue
        specific = variant is not None
        current = chosen.get(version)
        if current is None or (specific and not current[0]):
            chosen[version] = (specific, Migration(version, name, path))
        elif current[1].name != name and specific == current[0]:
            raise RuntimeError(f"two migrations share version {version}: {current[1].path} and {path}")
    migrations = [m for _, (_, m) in sorted(chosen.items())]
    if not migrations:
        # An install without its schema would report "up to date" and then fail on missing tables.
        raise SchemaError(f"no migrations found in {directory}: the installation is incomplete")
    return migrations


@dataclass(frozen=True, slots=True)
class _Applied:
    version: int
    name: str
    checksum: str | None


async def _ensure_table(db: Database) -> None:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL, checksum TEXT)"
    )
    # Databases created before checksums were recorded lack the column.
    if db.dialect == "sqlite":
        columns = {row[1] for row in await db.fetch("PRAGMA table_info(schema_migrations)")}
        if "checksum" not in columns:
            await db.execute("ALTER TABLE schema_migrations ADD COLUMN checksum TEXT")
    else:
        await db.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT")


async def _applied(db: Database) -> dict[int, _Applied]:
    await _ensure_table(db)
    rows = await db.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {int(r[0]): _Applied(int(r[0]), str(r[1]), r[2]) for r in rows}


async def applied_versions(db: Database) -> set[int]:
    return set(await _applied(db))


async def check_history(
    db: Database, directory: Traversable | None = None, *, backfill: bool = True
) -> list[Migration]:
    """Compare the recorded history with the files; returns the pending migrations.

    Raises SchemaTooNewError when the database was migrated by a newer release. Warns about
    applied migrations whose file changed, and records checksums missing from older rows.
    """
    known = discover(db.dialect, directory)
    by_version = {m.version: m for m in known}
    done = await _applied(db)
    unknown = sorted(v for v in done if v not in by_version)
    if unknown:
        newest = done[unknown[-1]]
        raise SchemaTooNewError(
            f"the database schema is newer than this homeserver: it has migration "
            f"{newest.version:04d}_{newest.name}, this version knows up to {known[-1].label}; "
            "run the newer release (or restore the backup taken before upgrading)"
        )
    for version, row in sorted(done.items()):
        migration = by_version[version]
        current = migration.checksum()
        if row.checksum is None:
            if backfill:
                await db.execute(
                    "UPDATE schema_migrations SET checksum = $1 WHERE version = $2", current, version
                )
        elif row.checksum != current or row.name != migration.name:
            logger.warning(
                "migration %s changed after it was applied to this database (recorded %04d_%s "
                "sha256 %s, file sha256 %s); it is not applied again: check the change by hand",
                migration.label,
                version,
                row.name,
                row.checksum[:12],
                current[:12],
            )
    return [m for m in known if m.version not in done]


async def migrate(db: Database, directory: Traversable | None = None) -> list[Migration]:
    """Apply pending migrations; returns the ones applied now (empty when up to date).

    Only the main process (or `homeserver migrate`) migrates; workers refuse to start on an
    outdated schema, so two migrators never race.
    """
    applied: list[Migration] = []
    for migration in await check_history(db, directory):
        sql = migration.read()
        record = (
            f"\nINSERT INTO schema_migrations (version, name, applied_ts, checksum) VALUES "
            f"({migration.version}, '{migration.name}', {int(time.time() * 1000)}, "
            f"'{checksum(sql)}');"
        )
        logger.info("applying migration %s", migration.label)
        await db.execute_script(sql + record)
        applied.append(migration)
    return applied


async def pending(db: Database, directory: Traversable | None = None) -> list[Migration]:
    """The migrations a worker would need (workers never write the history)."""
    return await check_history(db, directory, backfill=False)
