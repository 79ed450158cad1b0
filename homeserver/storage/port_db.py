"""Copy a SQLite database into PostgreSQL (`homeserver port-db`, like Synapse's synapse_port_db).

The target gets our schema by running the PostgreSQL migrations, then every table is copied in
batches ordered by rowid. Each batch and its row in `port_db_progress` commit together, so an
interrupted port resumes exactly where it stopped. The search index is rebuilt from SQLite's
FTS text (the engines index differently), identity sequences are moved past the copied ids,
and at the end every table's row count is compared.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from homeserver.storage.engine import DatabaseSettings, open_database
from homeserver.storage.migrations import discover, migrate
from homeserver.storage.search_dialect import PostgresSearchDialect

PROGRESS_TABLE = "port_db_progress"
SEARCH_TABLE = "event_search"
# Not copied: the migration history (the target has its own), our own progress, and SQLite's
# full-text tables (rebuilt as PostgreSQL's event_search from the text they store).
_SKIPPED = {"schema_migrations", PROGRESS_TABLE}
_FTS_PREFIXES = ("event_search",)


class PortError(RuntimeError):
    """A condition the operator has to fix (schema behind, target not empty...): one line."""


@dataclass
class TableCount:
    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target


@dataclass
class PortReport:
    counts: list[TableCount] = field(default_factory=list)
    rows_copied: int = 0
    resumed_tables: int = 0
    nul_characters_removed: int = 0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.counts)


Progress = Callable[[str], None]


def _open_source(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.Error as exc:
        raise PortError(f"cannot open SQLite database {path}: {exc}") from exc
    return conn


def _source_tables(src: sqlite3.Connection) -> list[str]:
    rows = src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [
        name
        for (name,) in rows
        if name not in _SKIPPED and not any(name.startswith(p) for p in _FTS_PREFIXES)
    ]


def _check_source_schema(src: sqlite3.Connection) -> None:
    try:
        applied = {int(v) for (v,) in src.execute("SELECT version FROM schema_migrations")}
    except sqlite3.Error as exc:
        raise PortError(
            f"the SQLite database has no schema_migrations table ({exc}): is it a homeserver database?"
        ) from exc
    known = {m.version for m in discover("sqlite")}
    if applied - known:
        raise PortError("the SQLite database is newer than this homeserver: upgrade first")
    if known - applied:
        raise PortError("the SQLite database is not fully migrated: run `homeserver migrate` on it first")


def _convert(value: Any, pg_type: str, counter: list[int]) -> Any:
    """A SQLite value as the PostgreSQL column type wants it (booleans are 0/1 in SQLite;
    PostgreSQL text cannot hold NUL characters, which are dropped and counted)."""
    if value is None:
        return None
    if pg_type == "boolean":
        return bool(value)
    if pg_type in ("bigint", "integer", "smallint"):
        return int(value)
    if pg_type in ("double precision", "real", "numeric"):
        return float(value)
    if pg_type == "bytea":
        return value if isinstance(value, bytes) else str(value).encode()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    if "\x00" in text:
        counter[0] += text.count("\x00")
        text = text.replace("\x00", "")
    return text


async def _target_columns(conn: asyncpg.Connection) -> dict[str, dict[str, str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        out.setdefault(row["table_name"], {})[row["column_name"]] = row["data_type"]
    return out


async def _dependency_order(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Referenced tables before the tables whose foreign keys point at them."""
    rows = await conn.fetch(
        "SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent "
        "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.contype = 'f' AND n.nspname = current_schema()"
    )
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for row in rows:
        if row["child"] in parents and row["parent"] in parents and row["child"] != row["parent"]:
            parents[row["child"]].add(row["parent"])
    ordered: list[str] = []
    placed: set[str] = set()
    while len(ordered) < len(tables):
        ready = sorted(t for t in tables if t not in placed and parents[t] <= placed)
        if not ready:  # a cycle: copy the rest in name order
            ready = sorted(t for t in tables if t not in placed)
        ordered.extend(ready)
        placed.update(ready)
    return ordered


async def _copy_table(
    src: sqlite3.Connection,
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    types: dict[str, str],
    start: tuple[int, int],
    batch_size: int,
    report: PortReport,
    progress: Progress,
) -> None:
    last_rowid, copied = start
    total = int(src.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    col_sql = ", ".join(f'"{c}"' for c in columns)
    nuls = [0]
    while True:
        rows = src.execute(
            f'SELECT rowid, {col_sql} FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT ?',
            (last_rowid, batch_size),
        ).fetchall()
        if not rows:
            break
        records = [
            tuple(_convert(value, types[col], nuls) for col, value in zip(columns, row[1:], strict=True))
            for row in rows
        ]
        last_rowid = int(rows[-1][0])
        copied += len(rows)
        async with conn.transaction():
            await conn.copy_records_to_table(table, records=records, columns=list(columns))
            await _save_progress(conn, table, last_rowid, copied, done=False)
        report.rows_copied += len(rows)
        progress(f"  {table}: {copied}/{total} rows")
    await _save_progress(conn, table, last_rowid, copied, done=True)
    report.nul_characters_removed += nuls[0]
    if copied == 0:
        progress(f"  {table}: empty")


async def _save_progress(
    conn: asyncpg.Connection, table: str, last_rowid: int, copied: int, *, done: bool
) -> None:
    await conn.execute(
        f"INSERT INTO {PROGRESS_TABLE} (table_name, last_rowid, rows_copied, done) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (table_name) DO UPDATE SET last_rowid = EXCLUDED.last_rowid, "
        "rows_copied = EXCLUDED.rows_copied, done = EXCLUDED.done",
        table,
        last_rowid,
        copied,
        done,
    )


async def _copy_search(
    src: sqlite3.Connection,
    conn: asyncpg.Connection,
    start: tuple[int, int],
    batch_size: int,
    report: PortReport,
    progress: Progress,
) -> None:
    """SQLite's FTS5 rows (rowid = stream ordering, normalised text) re-indexed as PostgreSQL's."""
    dialect = PostgresSearchDialect()
    last, copied = start
    total = int(src.execute(f"SELECT COUNT(*) FROM {SEARCH_TABLE}").fetchone()[0])
    while True:
        rows = src.execute(
            f"SELECT s.rowid, e.room_id, s.value FROM {SEARCH_TABLE} s "
            "JOIN events e ON e.stream_ordering = s.rowid WHERE s.rowid > ? ORDER BY s.rowid LIMIT ?",
            (last, batch_size),
        ).fetchall()
        if not rows:
            break
        entries = [(int(pos), str(room), str(text).replace("\x00", "")) for pos, room, text in rows]
        last = entries[-1][0]
        copied += len(entries)
        async with conn.transaction():
            for sql, args in dialect.insert_statements(entries):
                await conn.executemany(sql, args)
            await _save_progress(conn, SEARCH_TABLE, last, copied, done=False)
        report.rows_copied += len(entries)
        progress(f"  {SEARCH_TABLE} (search index): {copied}/{total} rows")
    await _save_progress(conn, SEARCH_TABLE, last, copied, done=True)


async def _reset_sequences(conn: asyncpg.Connection, progress: Progress) -> None:
    """Identity/serial columns: the next generated id follows the highest copied one (rows were
    copied with their ids, which does not advance the sequence)."""
    rows = await conn.fetch(
        "SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name) AS seq "
        "FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL"
    )
    for row in rows:
        top = await conn.fetchval(f'SELECT MAX("{row["column_name"]}") FROM "{row["table_name"]}"')
        await conn.execute("SELECT setval($1::regclass, $2, $3)", row["seq"], int(top or 1), top is not None)
        progress(f"  sequence {row['seq']}: next value after {int(top or 0)}")


async def _pg_connect(settings: DatabaseSettings) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(
            user=settings.pg_user,
            password=settings.pg_password,
            database=settings.pg_database,
            host=settings.pg_host,
            port=settings.pg_port,
            timeout=10,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        where = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_database}"
        raise PortError(f"cannot connect to PostgreSQL at {where}: {exc}") from exc


async def port(
    sqlite_path: str, target: DatabaseSettings, *, batch_size: int = 5000, progress: Progress = print
) -> PortReport:
    report = PortReport()
    src = _open_source(sqlite_path)
    try:
        _check_source_schema(src)
        progress(f"preparing the PostgreSQL schema in {target.pg_database}")
        pg = await open_database(target)
        try:
            applied = await migrate(pg)
        finally:
            await pg.close()
        if applied:
            progress(f"  applied {len(applied)} migration(s)")
        conn = await _pg_connect(target)
        try:
            await _port_tables(src, conn, batch_size, report, progress)
        finally:
            await conn.close()
    finally:
        src.close()
    return report


async def _port_tables(
    src: sqlite3.Connection, conn: asyncpg.Connection, batch_size: int, report: PortReport, progress: Progress
) -> None:
    target_cols = await _target_columns(conn)
    tables = _source_tables(src)
    missing = [t for t in tables if t not in target_cols]
    if missing:
        raise PortError(f"tables missing from the PostgreSQL schema: {', '.join(missing)}")
    columns: dict[str, list[str]] = {}
    for table in tables:
        cols = [row[1] for row in src.execute(f'PRAGMA table_info("{table}")')]
        extra = [c for c in cols if c not in target_cols[table]]
        if extra:
            raise PortError(f"{table}: columns missing from the PostgreSQL schema: {', '.join(extra)}")
        columns[table] = cols

    done_rows = await conn.fetch(f"SELECT table_name, last_rowid, rows_copied, done FROM {PROGRESS_TABLE}")
    state = {r["table_name"]: r for r in done_rows}
    if not state:
        busy = [
            t for t in [*tables, SEARCH_TABLE] if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{t}")')
        ]
        if busy:
            raise PortError(
                f"the PostgreSQL database already has data (in {', '.join(busy[:5])}) and no port in "
                "progress: port into a new, empty database"
            )
        progress(f"copying {len(tables)} tables")
    else:
        report.resumed_tables = sum(1 for r in state.values() if r["done"])
        progress(f"resuming: {report.resumed_tables} table(s) already copied")

    for table in await _dependency_order(conn, tables):
        row = state.get(table)
        if row is not None and row["done"]:
            continue
        start = (int(row["last_rowid"]), int(row["rows_copied"])) if row else (0, 0)
        await _copy_table(
            src, conn, table, columns[table], target_cols[table], start, batch_size, report, progress
        )

    search = state.get(SEARCH_TABLE)
    if search is None or not search["done"]:
        start = (int(search["last_rowid"]), int(search["rows_copied"])) if search else (0, 0)
        await _copy_search(src, conn, start, batch_size, report, progress)

    progress("setting sequences")
    await _reset_sequences(conn, progress)
    await conn.execute("ANALYZE")

    progress("verifying row counts")
    for table in [*sorted(tables), SEARCH_TABLE]:
        source = int(src.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
        copied = int(await conn.fetchval(f'SELECT COUNT(*) FROM "{table}"'))
        report.counts.append(TableCount(table, source, copied))
