"""event_search (and, on SQLite, event_search_grams): the full-text index of room events.

Rows are keyed by the event's stream ordering and written inside the persister's transaction (one
INSERT per table and batch). The SQL differs per engine and is built by `storage/search_dialect.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from homeserver.storage.database import Connection, Database, Row
from homeserver.storage.search_dialect import (
    MAX_INDEXED_CHARS,
    PG_TS_CONFIG,
    Order,
    PostgresSearchDialect,
    SearchQuery,
    SqliteSearchDialect,
    dialect_for,
    normalize,
    word_tsquery,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SearchHit:
    stream_ordering: int
    event_id: str
    room_id: str
    # Higher is more relevant (0 when the engine cannot rank the query).
    score: float


def _hits(rows: Sequence[Row]) -> list[SearchHit]:
    return [SearchHit(int(r[0]), r[1], r[2], float(r[3] or 0.0)) for r in rows]


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = dialect_for(db.dialect)
        # PostgreSQL: word -> whether its tsquery is empty (stop words only)
        self._stop_words: dict[str, bool] = {}

    async def check_engine(self) -> list[str]:
        """Problems that make substring search of unspaced scripts slow (never wrong), as warnings.
        On PostgreSQL also decides whether pg_trgm may serve such terms."""
        dialect = self.dialect
        if not isinstance(dialect, PostgresSearchDialect):
            return []
        problems = []
        has_trgm = bool(await self.db.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
        has_index = bool(
            await self.db.fetchval("SELECT 1 FROM pg_indexes WHERE indexname = 'event_search_trgm'")
        )
        ctype = str(
            await self.db.fetchval("SELECT datctype FROM pg_database WHERE datname = current_database()")
        )
        if not has_trgm or not has_index:
            problems.append(
                "the pg_trgm extension (or its event_search_trgm index) is missing: substring search of"
                " 3+ characters in Korean/CJK text falls back to the gram index and is slower;"
                " run CREATE EXTENSION pg_trgm as a superuser and recreate the index (docs/search.md)"
            )
        if ctype.upper() in ("C", "POSIX"):
            problems.append(
                f"the database's LC_CTYPE is {ctype!r}: pg_trgm drops every non-ASCII character, so"
                " Korean/CJK substring search uses the slower gram index; create the database with"
                " LC_COLLATE 'C' LC_CTYPE 'C.UTF-8' (docs/search.md)"
            )
        dialect.trigram_ok = not problems
        return problems

    # -- writes (inside the persister's transaction) -----------------------------------------------

    async def index_txn(self, conn: Connection, entries: Sequence[tuple[int, str, str]]) -> None:
        """Index (stream_ordering, room_id, text) rows; text is normalised here."""
        if not entries:
            return
        rows = [(pos, room_id, normalize(text[:MAX_INDEXED_CHARS])) for pos, room_id, text in entries]
        for sql, args in self.dialect.insert_statements(rows):
            await conn.executemany(sql, args)

    async def delete_events_txn(self, conn: Connection, event_ids: Sequence[str]) -> None:
        """Drop the index rows of these events (redacted), if they have any."""
        for event_id in event_ids:
            pos = await conn.fetchval("SELECT stream_ordering FROM events WHERE event_id = $1", event_id)
            if pos is None:
                continue
            if isinstance(self.dialect, SqliteSearchDialect):
                text = await conn.fetchval("SELECT value FROM event_search WHERE rowid = $1", pos)
                if text is None:
                    continue
                # A contentless FTS5 table forgets a row only when told its exact tokens again.
                args = self.dialect.gram_delete_args(int(pos), text)
                if args is not None:
                    await conn.execute(
                        "INSERT INTO event_search_grams (event_search_grams, rowid, grams)"
                        " VALUES ('delete', $1, $2)",
                        *args,
                    )
                await conn.execute("DELETE FROM event_search WHERE rowid = $1", pos)
            else:
                await conn.execute("DELETE FROM event_search WHERE stream_ordering = $1", pos)

    # -- reads -------------------------------------------------------------------------------------

    async def prepare(self, query: SearchQuery) -> SearchQuery:
        """The query with the terms the word index cannot serve marked (PostgreSQL: a word made of
        stop words only, e.g. "the", gives an empty tsquery; it is matched as a substring)."""
        if not isinstance(self.dialect, PostgresSearchDialect):
            return query
        unindexable = set()
        for term in query.terms:
            if term.unspaced or not term.has_word_chars:
                continue
            empty = self._stop_words.get(term.text)
            if empty is None:
                nodes = await self.db.fetchval(
                    f"SELECT numnode(to_tsquery('{PG_TS_CONFIG}', $1))", word_tsquery(term)
                )
                empty = not nodes
                if len(self._stop_words) >= 10_000:
                    self._stop_words.clear()
                self._stop_words[term.text] = empty
            if empty:
                unindexable.add(term.text)
        return replace(query, unindexable=frozenset(unindexable)) if unindexable else query

    def uses_index(self, query: SearchQuery) -> bool:
        return self.dialect.uses_index(query)

    async def search_page(
        self, query: SearchQuery, order: Order, *, before: int | None, offset: int, limit: int
    ) -> list[SearchHit]:
        """Matching events, best (rank) or newest (recent) first: recent pages by `before` (a stream
        ordering, exclusive), rank pages by `offset`."""
        stmt = self.dialect.search_page(query, order, before=before, offset=offset, limit=limit)
        return _hits(await self.db.fetch(stmt.sql, *stmt.args))

    async def count(self, query: SearchQuery) -> int:
        stmt = self.dialect.count(query)
        return int(await self.db.fetchval(stmt.sql, *stmt.args) or 0)

    async def window_page(
        self, query: SearchQuery, *, before: int, floor: int, limit: int
    ) -> list[SearchHit]:
        """Newest first among floor <= stream_ordering < before, by scanning (no index applies)."""
        stmt = self.dialect.window_page(query, before=before, floor=floor, limit=limit)
        return _hits(await self.db.fetch(stmt.sql, *stmt.args))
