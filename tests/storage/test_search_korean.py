"""The search index on both engines: Korean/CJK substrings of every length, English words, paging,
deletion, and PostgreSQL's fallbacks (LC_CTYPE 'C', no pg_trgm)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from homeserver.storage.database import Database
from homeserver.storage.migrations import migrate
from homeserver.storage.postgres import PostgresDatabase
from homeserver.storage.search_dialect import Order, PostgresSearchDialect, SearchQuery, parse_terms
from homeserver.storage.stores.search import SearchStore

from ..pg import PG_HOST, PG_PASSWORD, PG_PORT, PG_USER, require_postgres

ROOM = "!room:test.local"
OTHER_ROOM = "!other:test.local"

TEXTS = {
    1: "내일 회의는 10시입니다",
    2: "점심 메뉴는 김치찌개",
    3: "The meetings are running late today",
    4: "明天的会议在十点",
    5: "회의록은 공유 폴더에 있습니다",
    6: "オンライン会議の資料",
    7: "다른 방의 회의 메시지",  # in OTHER_ROOM
}

CASES = [
    ("회의", {1, 5}),
    ("회", {1, 5}),
    ("10시", {1}),
    ("회의는", {1}),
    ("시입니다", {1}),
    ("니다", {1, 5}),
    ("입니다", {1}),
    ("김치", {2}),
    ("찌개", {2}),
    ("치찌", {2}),
    ("점심 김치찌개", {2}),
    ("내일 10시", {1}),
    ("회의실", set()),
    ("会议", {4}),
    ("会議", {6}),
    ("資料", {6}),
    ("オンライン", {6}),
    ("meeting", {3}),
    ("RUNNING", {3}),
    ("run late", {3}),
    ("xylophone", set()),
    ("the", {3}),  # a stop word on PostgreSQL: matched as a substring
    ("the meetings", {3}),
]


async def _setup(db: Database) -> SearchStore:
    await migrate(db)
    store = SearchStore(db)
    await store.check_engine()
    async with db.transaction() as conn:
        for pos in TEXTS:
            room = OTHER_ROOM if pos == 7 else ROOM
            await conn.execute(
                "INSERT INTO events (event_id, room_id, stream_ordering, depth, type, sender,"
                " origin_server_ts, json) VALUES ($1, $2, $3, $4, 'm.room.message', '@a:x', 0, '{}')",
                f"$e{pos}",
                room,
                pos,
                pos,
            )
        await store.index_txn(
            conn, [(pos, OTHER_ROOM if pos == 7 else ROOM, text) for pos, text in TEXTS.items()]
        )
    return store


async def _find(
    store: SearchStore, term: str, rooms: Sequence[str] = (ROOM,), order: Order = "recent"
) -> set[int]:
    query = await store.prepare(SearchQuery(parse_terms(term), tuple(rooms)))
    if store.uses_index(query):
        hits = await store.search_page(query, order, before=None, offset=0, limit=100)
    else:
        hits = await store.window_page(query, before=1000, floor=0, limit=100)
    return {h.stream_ordering for h in hits}


async def test_substrings_on_both_engines(db: Database) -> None:
    store = await _setup(db)
    for term, expected in CASES:
        assert await _find(store, term) == expected, term
        assert await _find(store, term, order="rank") == expected, term


async def test_rooms_and_bounds(db: Database) -> None:
    store = await _setup(db)
    assert await _find(store, "회의", rooms=(ROOM, OTHER_ROOM)) == {1, 5, 7}
    assert await _find(store, "회의", rooms=(OTHER_ROOM,)) == {7}
    bounded = SearchQuery(parse_terms("회의"), (), ((ROOM, 4),))
    hits = await store.search_page(bounded, "recent", before=None, offset=0, limit=10)
    assert [h.stream_ordering for h in hits] == [1]
    assert await store.count(SearchQuery(parse_terms("회의"), (ROOM, OTHER_ROOM))) == 3


async def test_recent_and_rank_paging(db: Database) -> None:
    store = await _setup(db)
    query = SearchQuery(parse_terms("회"), (ROOM, OTHER_ROOM))
    first = await store.search_page(query, "recent", before=None, offset=0, limit=2)
    assert [h.stream_ordering for h in first] == [7, 5]
    rest = await store.search_page(query, "recent", before=5, offset=0, limit=2)
    assert [h.stream_ordering for h in rest] == [1]
    ranked = await store.search_page(query, "rank", before=None, offset=0, limit=10)
    scores = [h.score for h in ranked]
    assert scores == sorted(scores, reverse=True)
    tail = await store.search_page(query, "rank", before=None, offset=1, limit=10)
    assert [h.event_id for h in tail] == [h.event_id for h in ranked[1:]]


async def test_deleting_rows_forgets_every_index(db: Database) -> None:
    store = await _setup(db)
    async with db.transaction() as conn:
        await store.delete_events_txn(conn, ["$e1", "$e2", "$unknown"])
    assert await _find(store, "회의") == {5}
    assert await _find(store, "10시") == set()
    assert await _find(store, "김치") == set()
    if db.dialect == "sqlite":
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO event_search_grams (event_search_grams) VALUES ('integrity-check')"
            )
            await conn.execute("INSERT INTO event_search (event_search) VALUES ('integrity-check')")


async def test_gram_fallback_finds_long_terms(db: Database) -> None:
    """PostgreSQL without a usable pg_trgm: 3+ character Korean terms go through the grams."""
    store = await _setup(db)
    if not isinstance(store.dialect, PostgresSearchDialect):
        pytest.skip("PostgreSQL only")
    store.dialect.trigram_ok = False
    for term, expected in CASES:
        assert await _find(store, term) == expected, term


@pytest.fixture
async def c_ctype_db() -> AsyncIterator[Database]:
    """A PostgreSQL database created with LC_CTYPE 'C' (pg_trgm then ignores Hangul)."""
    await require_postgres()
    name = f"hs_test_c_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, database="postgres"
    )
    try:
        await admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        )
        db = PostgresDatabase(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, database=name)
        await db.open()
        try:
            yield db
        finally:
            await db.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_c_ctype_database_is_detected_and_still_works(c_ctype_db: Database) -> None:
    store = await _setup(c_ctype_db)
    problems = await store.check_engine()
    assert any("LC_CTYPE" in p for p in problems)
    assert isinstance(store.dialect, PostgresSearchDialect) and not store.dialect.trigram_ok
    for term, expected in CASES:
        assert await _find(store, term) == expected, term
