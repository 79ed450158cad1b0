"""Migrations: found as package data, checksums recorded and checked, newer schemas refused.

Runs on both engines (the `db` fixture). Each test copies the real migrations into a temp folder
so it can edit or extend them without touching `schema/`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from homeserver.storage.database import Database
from homeserver.storage.migrations import (
    SchemaError,
    SchemaTooNewError,
    check_history,
    checksum,
    discover,
    migrate,
    pending,
    schema_dir,
)


def _copy_schema(tmp_path: Path) -> Path:
    target = tmp_path / "schema_copy"
    target.mkdir()
    for item in schema_dir().iterdir():
        if item.name.endswith(".sql"):
            (target / item.name).write_text(item.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def test_schema_found_through_the_package() -> None:
    names = [m.label for m in discover("sqlite")]
    assert names[0] == "0001_accounts"
    # Same files as the top-level schema/ folder (the source of truth).
    repo_schema = Path(__file__).resolve().parents[2] / "schema"
    assert {p.name for p in repo_schema.glob("*.sql")} == {
        p.name for p in schema_dir().iterdir() if p.name.endswith(".sql")
    }


def test_empty_schema_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no migrations found"):
        discover("sqlite", tmp_path)


async def test_checksums_recorded(db: Database, tmp_path: Path) -> None:
    folder = _copy_schema(tmp_path)
    applied = await migrate(db, folder)
    assert applied
    rows = await db.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    expected = {m.version: m.checksum() for m in discover(db.dialect, folder)}
    assert {int(r[0]): r[1] for r in rows} == expected
    assert await migrate(db, folder) == []


async def test_database_from_previous_version_without_checksum_column(db: Database, tmp_path: Path) -> None:
    folder = _copy_schema(tmp_path)
    first = discover(db.dialect, folder)[0]
    # The table as the previous release created it, with its first migration applied.
    await db.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_ts BIGINT NOT NULL)"
    )
    await db.execute_script(
        first.read() + f"\nINSERT INTO schema_migrations VALUES ({first.version}, '{first.name}', 1);"
    )
    applied = await migrate(db, folder)
    assert first.version not in {m.version for m in applied}
    assert len(applied) == len(discover(db.dialect, folder)) - 1
    stored = await db.fetchval("SELECT checksum FROM schema_migrations WHERE version = $1", first.version)
    assert stored == first.checksum()


async def test_edited_migration_warns_and_is_not_reapplied(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy_schema(tmp_path)
    await migrate(db, folder)
    edited = folder / "0001_accounts.sql"
    edited.write_text(edited.read_text() + "\n-- edited after release\n")
    with caplog.at_level(logging.WARNING, logger="homeserver.storage.migrations"):
        assert await migrate(db, folder) == []
    assert "0001_accounts changed after it was applied" in caplog.text


async def test_crlf_checkout_is_not_an_edit(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy_schema(tmp_path)
    await migrate(db, folder)
    path = folder / "0001_accounts.sql"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert checksum(path.read_text()) == checksum(path.read_text().replace("\r\n", "\n"))
    with caplog.at_level(logging.WARNING, logger="homeserver.storage.migrations"):
        await migrate(db, folder)
    assert "changed after it was applied" not in caplog.text


async def test_schema_newer_than_code_is_refused(db: Database, tmp_path: Path) -> None:
    folder = _copy_schema(tmp_path)
    (folder / "9999_from_the_future.sql").write_text("CREATE TABLE future_table (id TEXT);\n")
    await migrate(db, folder)
    (folder / "9999_from_the_future.sql").unlink()
    with pytest.raises(SchemaTooNewError, match="9999_from_the_future") as info:
        await migrate(db, folder)
    assert "\n" not in str(info.value)
    with pytest.raises(SchemaTooNewError):
        await pending(db, folder)


async def test_pending_lists_new_migrations_without_writing(db: Database, tmp_path: Path) -> None:
    folder = _copy_schema(tmp_path)
    await migrate(db, folder)
    (folder / "9000_next.sql").write_text("CREATE TABLE next_table (id TEXT);\n")
    assert [m.label for m in await check_history(db, folder, backfill=False)] == ["9000_next"]
