"""The outbound federation queue store (schema/0025) on both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from homeserver.storage.database import Database
from homeserver.storage.migrations import migrate
from homeserver.storage.stores.federation import DestinationRetry, DestinationStore
from homeserver.storage.stores.federation_queue import DestinationAdminStore, FederationQueueStore, QueuedPdu

A, B = "a.example", "b_x.example"


@pytest.fixture
async def store(db: Database) -> AsyncIterator[FederationQueueStore]:
    await migrate(db)
    yield FederationQueueStore(db)


async def test_positions_only_move_forward(store: FederationQueueStore) -> None:
    assert await store.get_position("events") is None
    for value in (5, 3, 9):
        async with store.db.transaction() as conn:
            await store.set_position_txn(conn, "events", value)
    assert await store.get_position("events") == 9


async def test_pdus_transactions_and_catch_up(store: FederationQueueStore) -> None:
    async with store.db.transaction() as conn:
        for i in range(1, 6):
            await store.queue_pdu_txn(conn, A, QueuedPdu(i, f"!r{i % 2}:x", f"$e{i}"), queue=True)
        await store.queue_pdu_txn(conn, B, QueuedPdu(3, "!r1:x", "$e3"), queue=False)
        assert await store.count_pdus_txn(conn, A) == 5
    assert [p.event_id for p in await store.list_pdus(A, 3)] == ["$e1", "$e2", "$e3"]
    assert await store.list_pdus(B, 10) == []  # only remembered for catch-up
    assert await store.list_destinations_with_work() == [A]

    txn = await store.begin_txn(A, lambda seq: f"t{seq}", {"pdus": [1]}, [1, 2, 3], [])
    state = await store.get_state(A)
    assert state.in_flight == txn and txn.txn_id == "t1" and state.txn_seq == 1
    await store.complete_txn(A, txn, delivered=True)
    state = await store.get_state(A)
    assert state.in_flight is None and state.last_successful_stream_ordering == 3
    assert [p.stream_ordering for p in await store.list_pdus(A, 10)] == [4, 5]
    assert (await store.begin_txn(A, lambda seq: f"t{seq}", {}, [], [])).txn_id == "t2"
    await store.reset_destination(A)
    assert (await store.get_state(A)).in_flight is None

    # catch-up: the queue is dropped; the rooms' latest events after the last success remain
    await store.start_catch_up(A)
    assert (await store.get_state(A)).catching_up
    assert await store.list_pdus(A, 10) == []
    rooms = await store.list_catch_up_rooms(A, 3, 10)
    assert [(r.room_id, r.event_id) for r in rooms] == [("!r0:x", "$e4"), ("!r1:x", "$e5")]
    assert not await store.finish_catch_up(A, 3)
    assert await store.finish_catch_up(A, 5)
    state = await store.get_state(A)
    assert not state.catching_up and state.last_successful_stream_ordering == 5


async def test_edus_coalesce_and_device_list_chain(store: FederationQueueStore) -> None:
    async with store.db.transaction() as conn:
        await store.queue_edu_txn(conn, A, 1, "m.direct_to_device", {"n": 1}, None)
        await store.queue_edu_txn(conn, A, 2, "m.signing_key_update", {"v": 1}, "@u:x")
        await store.queue_edu_txn(conn, A, 3, "m.direct_to_device", {"n": 2}, None)
        await store.queue_edu_txn(conn, A, 4, "m.signing_key_update", {"v": 2}, "@u:x")
        assert await store.swap_device_list_sent_txn(conn, A, "@u:x", 7) is None
        assert await store.swap_device_list_sent_txn(conn, A, "@u:x", 9) == 7
        assert await store.swap_device_list_sent_txn(conn, B, "@u:x", 10) is None
    assert [(e.seq, e.content) for e in await store.list_edus(A, 10)] == [
        (1, {"n": 1}),
        (3, {"n": 2}),
        (4, {"v": 2}),
    ]
    assert await store.max_edu_seq() == 4
    counts = await store.pending_counts()
    assert (counts[A].pdus, counts[A].edus) == (0, 3)
    txn = await store.begin_txn(A, str, {}, [], [1, 3])
    await store.complete_txn(A, txn, delivered=True)
    assert [e.seq for e in await store.list_edus(A, 10)] == [4]


async def test_destinations_admin_queries(store: FederationQueueStore) -> None:
    backoff = DestinationStore(store.db)
    await backoff.upsert_destination(DestinationRetry(A, 100, 200, 600_000))
    await backoff.upsert_destination(DestinationRetry("c.example", None, 0, 0))
    async with store.db.transaction() as conn:
        await store.queue_pdu_txn(conn, B, QueuedPdu(3, "!r:x", "$e"), queue=True)
    await store.set_last_successful(B, 3)
    admin = DestinationAdminStore(store.db)
    rows, total = await admin.list_destinations(0, 10, "destination", False, None)
    assert total == 3 and [r.destination for r in rows] == [A, B, "c.example"]
    assert rows[0].retry_interval == 600_000 and rows[0].failure_ts == 100
    assert rows[1].retry_interval == 0 and rows[1].last_successful_stream_ordering == 3
    rows, _ = await admin.list_destinations(0, 10, "retry_interval", True, None)
    assert rows[0].destination == A
    rows, _ = await admin.list_destinations(1, 1, "destination", True, None)
    assert [r.destination for r in rows] == [B]
    # `_` is a literal in the search, not a LIKE wildcard
    rows, total = await admin.list_destinations(0, 10, "destination", False, "B_X")
    assert total == 1 and rows[0].destination == B
    rows, total = await admin.list_destinations(0, 10, "destination", False, "%")
    assert total == 0
    assert await admin.get_destination("nope.example") is None
    rooms, total = await admin.list_destination_rooms(B, 0, 10, False)
    assert rooms == [("!r:x", 3)] and total == 1
