"""The Redis link in one process: main's publisher, a worker's feed, gaps caught up from the source.

Uses the Redis at 127.0.0.1:6379 (TEST_REDIS_PORT), on channels named after a random server name;
skips without it (fails under CI=true).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Sequence
from typing import Any

import pytest

from homeserver.core.errors import DatabaseUnavailableError
from homeserver.core.streams import EventsRow, ReceiptRow, Stream, StreamRow, TypingRow
from homeserver.replication.bus import StreamBus
from homeserver.replication.redis_link import (
    RedisPublisher,
    ReplicationUnavailableError,
    check_reachable,
    make_client,
    positions_channel,
)
from homeserver.replication.worker import ReplicaTargets, WorkerFeed

PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))


async def _redis() -> Any:
    client = make_client("127.0.0.1", PORT, None, 0, False)
    try:
        await check_reachable(client, f"127.0.0.1:{PORT}")
    except ReplicationUnavailableError as exc:
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (required under CI=true)")
        pytest.skip(str(exc))
    return client


class FakeState:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def cached(self, room_id: str) -> Any:
        return None

    def evict(self, room_id: str) -> None:
        pass

    async def get(self, room_id: str) -> Any:
        self.loaded.append(room_id)
        return None

    def publish(self, snapshot: Any) -> None:
        pass


class FakeTyping:
    position = 0

    def load_snapshot(self, position: int, rooms: dict[str, list[str]]) -> set[str]:
        self.position = position
        return set(rooms)

    def apply_replicated(self, row: TypingRow) -> None:
        self.position = row.position

    def typing_users(self, room_id: str) -> list[str]:
        return []


class Nothing:
    current_stream = 0

    def invalidate(self, event_id: str) -> None:
        pass

    async def apply_replicated(self, *args: Any) -> None:
        pass


def _row(n: int) -> EventsRow:
    return EventsRow(n, "!r:hs", f"$e{n}", "m.room.message", None, "@a:hs")


async def _setup(
    source_rows: list[EventsRow], db_down: list[bool] | None = None
) -> tuple[StreamBus, StreamBus, RedisPublisher, WorkerFeed, list[Any]]:
    server = f"feed{secrets.token_hex(4)}"
    main_bus, worker_bus = StreamBus(), StreamBus()
    seen: list[tuple[int, list[StreamRow]]] = []
    worker_bus.subscribe(Stream.EVENTS, lambda p, rows: seen.append((p, list(rows))))
    asked: list[tuple[int, int]] = []

    async def events_since(after: int, upto: int, limit: int) -> Sequence[StreamRow]:
        asked.append((after, upto))
        if db_down and db_down[0]:
            raise DatabaseUnavailableError("connection refused")
        return [r for r in source_rows if after < r.stream_ordering <= upto][:limit]

    worker_bus.register_source(Stream.EVENTS, events_since)

    async def positions() -> dict[Stream, int]:
        if db_down is None:  # (the other tests announce everything they want delivered)
            return {Stream.EVENTS: 0}
        if db_down[0]:
            raise DatabaseUnavailableError("connection refused")
        return {Stream.EVENTS: max((r.stream_ordering for r in source_rows), default=0)}

    async def typing_snapshot() -> dict[str, Any]:
        return {"position": 5, "rooms": {}}

    async def nothing(*_: Any) -> None:
        pass

    nobody = Nothing()
    targets = ReplicaTargets(
        bus=worker_bus,
        state=FakeState(),
        events=nobody,
        persister=nobody,
        generators={},
        typing=FakeTyping(),
        presence=nobody,
        wake_device_lists=nothing,
        db_positions=positions,
        typing_snapshot=typing_snapshot,
        invalidation_handlers={},
    )
    publisher = RedisPublisher(await _redis(), main_bus, server, {})
    publisher.attach()
    publisher.start()
    feed = WorkerFeed(await _redis(), server, frozenset({Stream.EVENTS, Stream.TYPING}), targets)
    feed.start()
    await asyncio.wait_for(feed.connected.wait(), 10)
    return main_bus, worker_bus, publisher, feed, [seen, asked]


async def _until(check: Any) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_announcements_reach_the_worker_bus_in_order() -> None:
    main_bus, worker_bus, publisher, feed, (seen, asked) = await _setup([])
    try:
        for n in (1, 2, 3):
            main_bus.publish(Stream.EVENTS, n, [_row(n)])
        await _until(lambda: worker_bus.positions[Stream.EVENTS] == 3)
        assert [(p, [r.event_id for r in rows]) for p, rows in seen] == [
            (1, ["$e1"]),
            (2, ["$e2"]),
            (3, ["$e3"]),
        ]
        assert asked == []  # no gap, no database read
        state = feed.t.state
        assert isinstance(state, FakeState) and state.loaded == ["!r:hs"] * 3  # snapshot loaded (not cached)
    finally:
        await feed.stop()
        await publisher.stop()


async def test_a_gap_is_read_back_from_the_source() -> None:
    rows = [_row(n) for n in range(1, 6)]
    main_bus, worker_bus, publisher, feed, (seen, asked) = await _setup(rows)
    try:
        # announcements 1..4 never reach Redis (as while it restarts); the worker only sees 5
        publisher._last[Stream.EVENTS] = 4
        main_bus.publish(Stream.EVENTS, 5, [rows[4]])
        await _until(lambda: worker_bus.positions[Stream.EVENTS] == 5)
        assert asked == [(0, 4)]
        delivered = [r.event_id for _, batch in seen for r in batch]
        assert delivered == ["$e1", "$e2", "$e3", "$e4", "$e5"]  # each once, in order
    finally:
        await feed.stop()
        await publisher.stop()


async def test_heartbeat_reveals_a_lost_last_announcement() -> None:
    rows = [_row(1), _row(2)]
    _, worker_bus, publisher, feed, (seen, asked) = await _setup(rows)
    try:
        publisher._last[Stream.EVENTS] = 2  # both commits' announcements were lost
        publisher._put(positions_channel(publisher.server_name), {"positions": {"events": 2}})
        await _until(lambda: worker_bus.positions[Stream.EVENTS] == 2)
        assert asked == [(0, 2)]
        assert [r.event_id for _, batch in seen for r in batch] == ["$e1", "$e2"]
    finally:
        await feed.stop()
        await publisher.stop()


async def test_database_down_while_catching_up_waits_then_resumes(caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL restarting while a gap is read back: a warning, no traceback, and once it
    answers again everything missed arrives, each row once."""
    rows = [_row(n) for n in range(1, 4)]
    source_rows: list[EventsRow] = []
    db_down = [False]
    main_bus, worker_bus, publisher, feed, (seen, asked) = await _setup(source_rows, db_down)
    try:
        db_down[0] = True
        source_rows.extend(rows)
        publisher._last[Stream.EVENTS] = 2  # 1 and 2 were never announced: a gap to read back
        main_bus.publish(Stream.EVENTS, 3, [rows[2]])
        await _until(lambda: asked and not feed.connected.is_set() and feed._waiting_for_db)
        assert worker_bus.positions[Stream.EVENTS] == 0 and seen == []
        db_down[0] = False  # the next attempt catches up to the database's positions
        await _until(lambda: worker_bus.positions[Stream.EVENTS] == 3)
        assert [r.event_id for _, batch in seen for r in batch] == ["$e1", "$e2", "$e3"]
    finally:
        await feed.stop()
        await publisher.stop()
    assert not [r for r in caplog.records if r.exc_info], "a database outage logged a traceback"
    assert any("waiting for the database" in r.getMessage() for r in caplog.records)


async def test_other_streams_are_not_followed() -> None:
    main_bus, worker_bus, publisher, feed, _ = await _setup([])
    got: list[int] = []
    worker_bus.subscribe(Stream.RECEIPTS, lambda p, rows: got.append(p))
    try:
        main_bus.publish(Stream.RECEIPTS, 7, [ReceiptRow(7, "!r:hs", "m.read", "@a:hs", "$e", None)])
        main_bus.publish(Stream.EVENTS, 1, [_row(1)])
        await _until(lambda: worker_bus.positions[Stream.EVENTS] == 1)
        assert got == [] and worker_bus.positions[Stream.RECEIPTS] == 0
    finally:
        await feed.stop()
        await publisher.stop()


async def test_redis_unreachable_is_one_clear_error() -> None:
    client = make_client("127.0.0.1", 1, None, 0, False)
    with pytest.raises(ReplicationUnavailableError, match=r"^cannot reach Redis at 127.0.0.1:1: "):
        await check_reachable(client, "127.0.0.1:1")
    await client.aclose()
