"""The appservice transaction store on both engines: ids increase per appservice and are written
together with the positions they cover; acknowledged transactions go; device_inbox by position."""

from __future__ import annotations

import pytest

from homeserver.storage.database import Database
from homeserver.storage.migrations import migrate
from homeserver.storage.stores.appservice_txns import AppServicePositions, AppServiceTxnStore


async def test_transactions_and_positions(db: Database) -> None:
    await migrate(db)
    store = AppServiceTxnStore(db)
    assert await store.get_positions("a") is None
    await store.insert_positions("a", 10, 3)
    await store.insert_positions("a", 99, 99)  # a second start does not move an existing row
    await store.insert_positions("b", 10, 3)
    assert await store.get_positions("a") == AppServicePositions(10, 3, 0)

    first = await store.create_txn(
        "a", {"events": ["$1"]}, 1, events_position=12, to_device_position=4, now=1000
    )
    second = await store.create_txn(
        "a",
        {"events": ["$2", "$3"], "ephemeral": [{"type": "m.typing"}]},
        2,
        events_position=15,
        to_device_position=4,
        now=1001,
    )
    other = await store.create_txn("b", {"events": []}, 0, events_position=11, to_device_position=5, now=1)
    assert (first.txn_id, second.txn_id, other.txn_id) == (1, 2, 1)
    assert await store.get_positions("a") == AppServicePositions(15, 4, 2)
    pending = await store.list_pending_txns("a")
    assert [(t.txn_id, t.content, t.event_count) for t in pending] == [
        (1, {"events": ["$1"]}, 1),
        (2, {"events": ["$2", "$3"], "ephemeral": [{"type": "m.typing"}]}, 2),
    ]
    await store.delete_txn("a", 1)
    assert [t.txn_id for t in await store.list_pending_txns("a")] == [2]
    assert [t.txn_id for t in await store.list_pending_txns("b")] == [1]

    await store.update_positions("a", 20, 6)
    assert await store.get_positions("a") == AppServicePositions(20, 6, 2)
    with pytest.raises(LookupError):
        await store.create_txn("unknown", {}, 0, events_position=0, to_device_position=0, now=0)


async def test_inbox_after(db: Database) -> None:
    await migrate(db)
    store = AppServiceTxnStore(db)
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO device_inbox (user_id, device_id, stream_id, sender, type, content)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [
                ("@a:x", "D1", 1, "@s:x", "m.t", '{"n": 1}'),
                ("@b:x", "D2", 2, "@s:x", "m.t", '{"n": 2}'),
                ("@a:x", "D1", 3, "@s:x", "m.t", '{"n": 3}'),
            ],
        )
    found = await store.list_inbox_after(1, 3, 10)
    assert [(m.stream_id, m.user_id, m.device_id, m.content) for m in found] == [
        (2, "@b:x", "D2", {"n": 2}),
        (3, "@a:x", "D1", {"n": 3}),
    ]
    assert [m.stream_id for m in await store.list_inbox_after(0, 3, 2)] == [1, 2]


async def test_key_counts(db: Database) -> None:
    await migrate(db)
    store = AppServiceTxnStore(db)
    async with db.transaction() as conn:
        for user in ("@a:x", "@b:x"):
            await conn.execute("INSERT INTO users (user_id, created_ts) VALUES ($1, 0)", user)
        await conn.executemany(
            "INSERT INTO devices (user_id, device_id, created_ts) VALUES ($1, $2, 0)",
            [("@a:x", "D1"), ("@a:x", "D2"), ("@b:x", "D3")],
        )
        await conn.executemany(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, ts_added_ms)"
            " VALUES ($1, $2, $3, $4, '{}', 0)",
            [
                ("@a:x", "D1", "signed_curve25519", "k1"),
                ("@a:x", "D1", "signed_curve25519", "k2"),
                ("@a:x", "D1", "curve25519", "k3"),
            ],
        )
        await conn.executemany(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
            " VALUES ($1, $2, 'signed_curve25519', 'f', '{}', $3)",
            [("@a:x", "D1", False), ("@a:x", "D2", True)],
        )
    counts, fallback = await store.key_counts(["@a:x", "@c:x"])
    assert counts == {
        "@a:x": {"D1": {"signed_curve25519": 2, "curve25519": 1}, "D2": {"signed_curve25519": 0}}
    }
    assert fallback == {"@a:x": {"D1": ["signed_curve25519"]}}
