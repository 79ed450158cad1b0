"""Full-text search: text normalisation, CJK grams, and the SQL that differs between the engines.

Everything engine-specific about search lives here; `stores/search.py` and `stores/user_directory.py`
only execute what this module builds. See docs/search.md for the design.

Text is normalised once (NFKC, then case-folded) both when it is indexed and when it is searched, so
matching never depends on the database's locale or collation.

A search term is served by one of three paths:

- *substring* (3+ characters): SQLite FTS5 `trigram` (`MATCH '"term"'`); on PostgreSQL, terms of
  scripts written without spaces (Hangul, Han, kana, Thai...) use `LIKE '%term%'` on the pg_trgm
  GIN index, and space-separated words use the `english` tsvector with prefix matching
  (`'term':*`, stemmed) and ranking.
- *gram* (1-2 characters of a script written without spaces, e.g. "회의", "밥", "会议"): trigrams
  cannot serve these, so every indexed text also carries its unigrams and bigrams of such characters
  (see `grams`): an FTS5 `unicode61` table on SQLite, lexemes of the tsvector on PostgreSQL.
- *scan* (anything else, e.g. 1-2 Latin letters on SQLite): a post-filter with `instr()`/`LIKE` on
  the candidates of the other terms, or, when no term can use an index, a bounded newest-first window
  scan that continues through `next_batch`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Order = Literal["rank", "recent"]

# Scripts written without spaces between words: a user types any substring of a sentence.
_UNSPACED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul Compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana Phonetic Extensions
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7FF),  # Hangul Syllables, Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # Halfwidth Katakana (NFKC maps them anyway)
    (0x20000, 0x3FFFF),  # CJK Extensions B and later
)

# At most this much of one event's text is indexed (an event is at most 64 KiB anyway).
MAX_INDEXED_CHARS = 20_000

# PostgreSQL text search configuration for space-separated words (stemming + stop words).
PG_TS_CONFIG = "english"


def is_unspaced(ch: str) -> bool:
    code = ord(ch)
    if code < 0x0E00:
        return False
    return any(low <= code <= high for low, high in _UNSPACED_RANGES)


def normalize(text: str) -> str:
    """The form text is indexed and searched in: NFKC (full-width forms, decomposed Hangul from
    macOS clients, compatibility characters) and case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def grams(text: str) -> list[str]:
    """The 1-2 character grams of normalised `text` that short queries are looked up by: every
    character of a script written without spaces, and every pair of adjacent letters/digits of
    which at least one is such a character. Deduplicated, in order of first appearance.

    This function is part of the on-disk format (SQLite deletes grams by recomputing them): a
    change needs a migration that rebuilds the gram index from the stored text.
    """
    out: dict[str, None] = {}
    previous = ""
    previous_unspaced = False
    for ch in text:
        unspaced = is_unspaced(ch)
        alnum = ch.isalnum()
        if unspaced and alnum:
            out.setdefault(ch, None)
        if alnum and previous and (unspaced or previous_unspaced):
            out.setdefault(previous + ch, None)
        previous = ch if alnum else ""
        previous_unspaced = unspaced and alnum
    return list(out)


def _strip_punctuation(term: str) -> str:
    start, end = 0, len(term)
    while start < end and unicodedata.category(term[start])[0] in "PS":
        start += 1
    while end > start and unicodedata.category(term[end - 1])[0] in "PS":
        end -= 1
    return term[start:end]


@dataclass(frozen=True, slots=True)
class Term:
    """One whitespace-separated part of a search term, normalised."""

    text: str
    unspaced: bool  # contains a character of a script written without spaces

    @property
    def gram_ok(self) -> bool:
        """1-2 characters that are themselves a gram of any text containing them."""
        return len(self.text) <= 2 and self.text in grams(self.text)

    def required_grams(self) -> list[str]:
        """Grams every text containing this term has (an index pre-filter for unspaced terms)."""
        found = grams(self.text)
        pairs = [g for g in found if len(g) == 2]
        return pairs or found

    @property
    def has_word_chars(self) -> bool:
        return any(ch.isalnum() for ch in self.text)


def parse_terms(search_term: str, max_terms: int = 16) -> tuple[Term, ...]:
    """Split on whitespace; every term must match (AND). Leading/trailing punctuation is dropped
    ("회의?" finds "회의"), duplicates are removed."""
    seen: dict[str, Term] = {}
    for raw in normalize(search_term).split():
        text = _strip_punctuation(raw) or raw
        if text and text not in seen:
            seen[text] = Term(text, any(is_unspaced(ch) for ch in text))
        if len(seen) >= max_terms:
            break
    return tuple(seen.values())


# -- query model ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for and where: the store answers it page by page."""

    terms: tuple[Term, ...]
    # Rooms searchable in full, and rooms searchable up to a stream ordering (left, banned).
    rooms: tuple[str, ...]
    bounded_rooms: tuple[tuple[str, int], ...] = ()
    types: tuple[str, ...] = ("m.room.message", "m.room.name", "m.room.topic")
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    # Terms the engine's word index turned out not to serve (PostgreSQL: only stop words, such as
    # "the" or "don't"); they are matched as substrings instead. Set by `SearchStore.prepare`.
    unindexable: frozenset[str] = frozenset()


class SqlArgs:
    """Collects positional parameters and hands out their `$n` placeholders."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"

    def add_all(self, values: Iterable[Any]) -> str:
        return ", ".join(self.add(v) for v in values)


@dataclass(slots=True)
class Statement:
    sql: str
    args: list[Any] = field(default_factory=list)


def _fts5_phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _tsquery_lexeme(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def like_pattern(text: str) -> str:
    """`%text%` for LIKE with the default backslash escape (PostgreSQL)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SearchDialect:
    """The SQL of one engine. `search_page` returns rows (stream_ordering, event_id, room_id, score)
    with score higher = more relevant."""

    name: str

    # -- writes -------------------------------------------------------------------------------------

    def insert_statements(self, entries: Sequence[tuple[int, str, str]]) -> list[tuple[str, list[Any]]]:
        """(sql, rows) for executemany: entries are (stream_ordering, room_id, normalised text)."""
        raise NotImplementedError

    # -- reads -------------------------------------------------------------------------------------

    def uses_index(self, query: SearchQuery) -> bool:
        """False when no term can use an index (then only a bounded window scan is possible)."""
        raise NotImplementedError

    def search_page(
        self, query: SearchQuery, order: Order, *, before: int | None, offset: int, limit: int
    ) -> Statement:
        raise NotImplementedError

    def count(self, query: SearchQuery) -> Statement:
        raise NotImplementedError

    def window_page(self, query: SearchQuery, *, before: int, floor: int, limit: int) -> Statement:
        raise NotImplementedError

    # -- the user directory ---------------------------------------------------------------------------

    def contains(self, column: str, term: str, args: SqlArgs) -> str:
        raise NotImplementedError

    def starts_with(self, column: str, prefix_placeholder: str) -> str:
        raise NotImplementedError

    # -- shared helpers ------------------------------------------------------------------------------

    @staticmethod
    def _room_clause(query: SearchQuery, args: SqlArgs, room_col: str, pos_col: str) -> str:
        parts = []
        if query.rooms:
            parts.append(f"{room_col} IN ({args.add_all(query.rooms)})")
        for room_id, upto in query.bounded_rooms:
            parts.append(f"({room_col} = {args.add(room_id)} AND {pos_col} <= {args.add(upto)})")
        return "(" + " OR ".join(parts) + ")" if parts else "FALSE"

    @staticmethod
    def _event_clauses(query: SearchQuery, args: SqlArgs) -> str:
        sql = f" AND e.type IN ({args.add_all(query.types)}) AND NOT e.outlier AND e.redacted_by IS NULL"
        if query.senders is not None:
            sql += f" AND e.sender IN ({args.add_all(query.senders)})" if query.senders else " AND FALSE"
        if query.not_senders:
            sql += f" AND e.sender NOT IN ({args.add_all(query.not_senders)})"
        return sql


class SqliteSearchDialect(SearchDialect):
    """FTS5: `event_search` (trigram, stores the text) and `event_search_grams` (unicode61 over the
    grams, contentless). rowid = the event's stream ordering."""

    name = "sqlite"

    def insert_statements(self, entries: Sequence[tuple[int, str, str]]) -> list[tuple[str, list[Any]]]:
        texts = [(pos, text) for pos, _room, text in entries]
        gram_rows = [(pos, " ".join(g)) for pos, text in texts if (g := grams(text))]
        out: list[tuple[str, list[Any]]] = [
            ("INSERT INTO event_search (rowid, value) VALUES ($1, $2)", list(texts))
        ]
        if gram_rows:
            out.append(("INSERT INTO event_search_grams (rowid, grams) VALUES ($1, $2)", list(gram_rows)))
        return out

    @staticmethod
    def gram_delete_args(stream_ordering: int, text: str) -> list[Any] | None:
        g = grams(text)
        return [stream_ordering, " ".join(g)] if g else None

    @staticmethod
    def _split(query: SearchQuery) -> tuple[list[Term], list[Term], list[Term]]:
        trigram = [t for t in query.terms if len(t.text) >= 3]
        gram = [t for t in query.terms if len(t.text) < 3 and t.gram_ok]
        scan = [t for t in query.terms if len(t.text) < 3 and not t.gram_ok]
        return trigram, gram, scan

    def uses_index(self, query: SearchQuery) -> bool:
        trigram, gram, _ = self._split(query)
        return bool(trigram or gram)

    def _from_where(self, query: SearchQuery, args: SqlArgs) -> tuple[str, str, str, str]:
        """(select-from-where sql, position column, score expression, driving table)."""
        trigram, gram, scan = self._split(query)
        if trigram:
            table, pos = "event_search", "event_search.rowid"
            where = f"event_search MATCH {args.add(' AND '.join(_fts5_phrase(t.text) for t in trigram))}"
            if gram:
                match = args.add(" AND ".join(_fts5_phrase(t.text) for t in gram))
                where += (
                    " AND event_search.rowid IN"
                    f" (SELECT rowid FROM event_search_grams WHERE event_search_grams MATCH {match})"
                )
            value = "event_search.value"
        else:
            table, pos = "event_search_grams", "event_search_grams.rowid"
            where = f"event_search_grams MATCH {args.add(' AND '.join(_fts5_phrase(t.text) for t in gram))}"
            value = "(SELECT value FROM event_search WHERE event_search.rowid = event_search_grams.rowid)"
        for term in scan:
            where += f" AND instr({value}, {args.add(term.text)}) > 0"
        where += " AND " + self._room_clause(query, args, "e.room_id", "e.stream_ordering")
        where += self._event_clauses(query, args)
        sql = f"FROM {table} JOIN events e ON e.stream_ordering = {pos} WHERE {where}"
        return sql, pos, f"-bm25({table})", table

    def search_page(
        self, query: SearchQuery, order: Order, *, before: int | None, offset: int, limit: int
    ) -> Statement:
        args = SqlArgs()
        body, pos, score, _ = self._from_where(query, args)
        sql = f"SELECT {pos}, e.event_id, e.room_id, {score} AS score {body}"
        if order == "recent":
            if before is not None:
                sql += f" AND {pos} < {args.add(before)}"
            sql += f" ORDER BY {pos} DESC LIMIT {args.add(limit)}"
        else:
            sql += f" ORDER BY score DESC, {pos} DESC LIMIT {args.add(limit)} OFFSET {args.add(offset)}"
        return Statement(sql, args.values)

    def count(self, query: SearchQuery) -> Statement:
        args = SqlArgs()
        body, _, _, _ = self._from_where(query, args)
        return Statement(f"SELECT COUNT(*) {body}", args.values)

    def window_page(self, query: SearchQuery, *, before: int, floor: int, limit: int) -> Statement:
        args = SqlArgs()
        where = f"e.stream_ordering < {args.add(before)} AND e.stream_ordering >= {args.add(floor)}"
        for term in query.terms:
            where += f" AND instr(event_search.value, {args.add(term.text)}) > 0"
        where += " AND " + self._room_clause(query, args, "e.room_id", "e.stream_ordering")
        where += self._event_clauses(query, args)
        sql = (
            "SELECT e.stream_ordering, e.event_id, e.room_id, 0.0 AS score FROM events e"
            f" JOIN event_search ON event_search.rowid = e.stream_ordering WHERE {where}"
            f" ORDER BY e.stream_ordering DESC LIMIT {args.add(limit)}"
        )
        return Statement(sql, args.values)

    def contains(self, column: str, term: str, args: SqlArgs) -> str:
        return f"instr({column}, {args.add(term)}) > 0"

    def starts_with(self, column: str, prefix_placeholder: str) -> str:
        return f"substr({column}, 1, length({prefix_placeholder})) = {prefix_placeholder}"


def word_tsquery(term: Term) -> str:
    """The `to_tsquery` input for a space-separated word: stemmed, prefix."""
    return _tsquery_lexeme(term.text) + ":*"


class PostgresSearchDialect(SearchDialect):
    """One table `event_search` (stream_ordering, room_id, value, vector): `vector` holds the
    `english` lexemes of the text plus its grams; `value` has a pg_trgm GIN index when available."""

    name = "postgres"

    def __init__(self) -> None:
        # Whether pg_trgm can serve LIKE '%...%' for unspaced scripts (extension + index present,
        # and LC_CTYPE not C, which makes pg_trgm drop every non-ASCII character). When not, the
        # gram lexemes pre-filter such terms instead. Set by `SearchStore.check_engine()`.
        self.trigram_ok = True

    def insert_statements(self, entries: Sequence[tuple[int, str, str]]) -> list[tuple[str, list[Any]]]:
        rows = [(pos, room_id, text, grams(text)) for pos, room_id, text in entries]
        return [
            (
                "INSERT INTO event_search (stream_ordering, room_id, value, vector) VALUES ($1, $2, $3,"
                f" to_tsvector('{PG_TS_CONFIG}', $3) || array_to_tsvector($4::text[]))"
                " ON CONFLICT (stream_ordering) DO NOTHING",
                list(rows),
            )
        ]

    @staticmethod
    def _split(query: SearchQuery) -> tuple[list[Term], list[Term], list[Term], list[Term]]:
        words = [
            t for t in query.terms if not t.unspaced and t.has_word_chars and t.text not in query.unindexable
        ]
        substring = [t for t in query.terms if t.unspaced and len(t.text) >= 3]
        gram = [t for t in query.terms if t.unspaced and len(t.text) < 3 and t.gram_ok]
        scan = [t for t in query.terms if t not in words and t not in substring and t not in gram]
        return words, substring, gram, scan

    def uses_index(self, query: SearchQuery) -> bool:
        words, substring, gram, _ = self._split(query)
        return bool(words or substring or gram)

    def _where(self, query: SearchQuery, args: SqlArgs, *, score: bool) -> tuple[str, str]:
        """(FROM ... WHERE ..., score expression or "0.0")."""
        words, substring, gram, scan = self._split(query)
        clauses = []
        rank_parts = []
        if words:
            lexemes = [word_tsquery(t) for t in words]
            clauses.append(f"s.vector @@ to_tsquery('{PG_TS_CONFIG}', {args.add(' & '.join(lexemes))})")
            if score:
                rank_parts.append(f"to_tsquery('{PG_TS_CONFIG}', {args.add(' | '.join(lexemes))})")
        required = [t.text for t in gram]
        if not self.trigram_ok:
            required += [g for t in substring for g in t.required_grams()]
        if required:
            unique = list(dict.fromkeys(required))
            clauses.append(f"s.vector @@ {args.add(' & '.join(_tsquery_lexeme(g) for g in unique))}::tsquery")
        rank_grams = list(dict.fromkeys([*required, *(g for t in substring for g in t.required_grams())]))
        if score and rank_grams:
            rank_parts.append(f"{args.add(' | '.join(_tsquery_lexeme(g) for g in rank_grams))}::tsquery")
        for term in [*substring, *scan]:
            clauses.append(f"s.value LIKE {args.add(like_pattern(term.text))}")
        clauses.append(self._room_clause(query, args, "s.room_id", "s.stream_ordering"))
        where = " AND ".join(clauses) + self._event_clauses(query, args)
        expr = f"ts_rank(s.vector, {' || '.join(rank_parts)}, 1)" if rank_parts else "0.0"
        return (
            f"FROM event_search s JOIN events e ON e.stream_ordering = s.stream_ordering WHERE {where}",
            expr,
        )

    def search_page(
        self, query: SearchQuery, order: Order, *, before: int | None, offset: int, limit: int
    ) -> Statement:
        args = SqlArgs()
        body, score = self._where(query, args, score=True)
        sql = f"SELECT s.stream_ordering, e.event_id, s.room_id, {score} AS score {body}"
        if order == "recent":
            if before is not None:
                sql += f" AND s.stream_ordering < {args.add(before)}"
            sql += f" ORDER BY s.stream_ordering DESC LIMIT {args.add(limit)}"
        else:
            page = f"LIMIT {args.add(limit)} OFFSET {args.add(offset)}"
            sql += f" ORDER BY score DESC, s.stream_ordering DESC {page}"
        return Statement(sql, args.values)

    def count(self, query: SearchQuery) -> Statement:
        args = SqlArgs()
        body, _ = self._where(query, args, score=False)
        return Statement(f"SELECT COUNT(*) {body}", args.values)

    def window_page(self, query: SearchQuery, *, before: int, floor: int, limit: int) -> Statement:
        args = SqlArgs()
        clauses = [
            f"s.stream_ordering < {args.add(before)}",
            f"s.stream_ordering >= {args.add(floor)}",
            *(f"s.value LIKE {args.add(like_pattern(t.text))}" for t in query.terms),
            self._room_clause(query, args, "s.room_id", "s.stream_ordering"),
        ]
        sql = (
            "SELECT s.stream_ordering, e.event_id, s.room_id, 0.0 AS score FROM event_search s"
            " JOIN events e ON e.stream_ordering = s.stream_ordering"
            f" WHERE {' AND '.join(clauses)}{self._event_clauses(query, args)}"
            f" ORDER BY s.stream_ordering DESC LIMIT {args.add(limit)}"
        )
        return Statement(sql, args.values)

    def contains(self, column: str, term: str, args: SqlArgs) -> str:
        return f"{column} LIKE {args.add(like_pattern(term))}"

    def starts_with(self, column: str, prefix_placeholder: str) -> str:
        return f"starts_with({column}, {prefix_placeholder})"


def dialect_for(name: str) -> SearchDialect:
    if name == "sqlite":
        return SqliteSearchDialect()
    if name == "postgres":
        return PostgresSearchDialect()
    raise ValueError(f"unknown database dialect {name!r}")
