"""Apply schema/NNNN_name.sql migrations in order, once each, recorded in `schema_migrations`.

A migration may have dialect variants `NNNN_name.sqlite.sql` / `NNNN_name.postgres.sql`; the variant
for the running engine wins over the plain file. Each migration runs in its own transaction together
with its version row, so a crash never leaves one half-applied.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from homeserver.storage.database import Database

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def schema_dir() -> Path:
    override = os.environ.get("HOMESERVER_SCHEMA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "schema"


def discover(dialect: str, directory: Path | None = None) -> list[Migration]:
    directory = directory or schema_dir()
    chosen: dict[int, tuple[bool, Migration]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
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
    return [m for _, (_, m) in sorted(chosen.items())]


async def applied_versions(db: Database) -> set[int]:
    await db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)"
    )
    rows = await db.fetch("SELECT version FROM schema_migrations")
    return {int(r[0]) for r in rows}


async def migrate(db: Database, directory: Path | None = None) -> list[Migration]:
    """Apply pending migrations; returns the ones applied now (empty when up to date).

    Only the main process (or `homeserver migrate`) migrates; workers refuse to start on an
    outdated schema, so two migrators never race.
    """
    done = await applied_versions(db)
    applied: list[Migration] = []
    for migration in discover(db.dialect, directory):
        if migration.version in done:
            continue
        sql = migration.path.read_text(encoding="utf-8")
        record = (
            f"\nINSERT INTO schema_migrations (version, name, applied_ts) VALUES "
            f"({migration.version}, '{migration.name}', {int(time.time() * 1000)});"
        )
        logger.info("applying migration %04d_%s", migration.version, migration.name)
        await db.execute_script(sql + record)
        applied.append(migration)
    return applied


async def pending(db: Database, directory: Path | None = None) -> list[Migration]:
    done = await applied_versions(db)
    return [m for m in discover(db.dialect, directory) if m.version not in done]
