"""Stream positions read back at startup (the highest id each stream table holds)."""

from __future__ import annotations

from homeserver.storage.database import Database


async def max_position(db: Database, table: str, column: str) -> int:
    """`MAX(column)` of `table`, 0 when empty. Table and column are code constants, never input."""
    return int(await db.fetchval(f"SELECT COALESCE(MAX({column}), 0) FROM {table}") or 0)
