"""The stores behind push delivery, on both engines: pusher positions and failure state, email
throttles, unread notifications in a range, and Synapse's badge count."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from homeserver.storage.database import Database
from homeserver.storage.migrations import migrate
from homeserver.storage.stores.push_actions import PushActionStore
from homeserver.storage.stores.pushers import Pusher, PusherStore, Throttle

USER = "@bob:test.local"


@pytest.fixture
async def mdb(db: Database) -> AsyncIterator[Database]:
    await migrate(db)
    yield db


def _pusher(pushkey: str = "k1", user_id: str = USER) -> Pusher:
    return Pusher(user_id, "app", pushkey, "http", "App", "Phone", None, "ko", {"url": "u"}, "DEV")


async def test_pusher_position_and_failure_state(mdb: Database) -> None:
    store = PusherStore(mdb)
    await store.upsert(_pusher(), 1_000, append=False, position=7)
    got = await store.get(USER, "app", "k1")
    assert got is not None
    assert (got.created_ts, got.last_stream_ordering, got.failing_since) == (1_000, 7, None)

    await store.set_failing_since(USER, "app", "k1", 5_000)
    assert (await store.list_all())[0].failing_since == 5_000
    assert await store.update_position(USER, "app", "k1", 9, 6_000)
    got = await store.get(USER, "app", "k1")
    assert got is not None and (got.last_stream_ordering, got.failing_since) == (9, None)

    # Set again: starts over at the new position (as Synapse), failure cleared.
    await store.set_failing_since(USER, "app", "k1", 7_000)
    await store.upsert(_pusher(), 8_000, append=False, position=20)
    got = await store.get(USER, "app", "k1")
    assert got is not None and (got.created_ts, got.last_stream_ordering, got.failing_since) == (
        8_000,
        20,
        None,
    )

    assert await store.delete(USER, "app", "k1")
    assert not await store.update_position(USER, "app", "k1", 30, 9_000)  # gone: the worker stops
    assert not await store.delete(USER, "app", "k1")


async def test_email_throttles_go_with_the_pusher(mdb: Database) -> None:
    store = PusherStore(mdb)
    await store.upsert(_pusher("a@b.c"), 1, append=False)
    await store.set_throttle(USER, "app", "a@b.c", "!r1:x", Throttle(100, 600_000))
    await store.set_throttle(USER, "app", "a@b.c", "!r1:x", Throttle(200, 86_400_000))
    await store.set_throttle(USER, "app", "a@b.c", "!r2:x", Throttle(300, 600_000))
    assert await store.get_throttles(USER, "app", "a@b.c") == {
        "!r1:x": Throttle(200, 86_400_000),
        "!r2:x": Throttle(300, 600_000),
    }
    await store.delete(USER, "app", "a@b.c")
    assert await store.get_throttles(USER, "app", "a@b.c") == {}


async def test_devices_take_their_pushers(mdb: Database) -> None:
    store = PusherStore(mdb)
    await store.upsert(_pusher("k1"), 1, append=True)
    await store.upsert(Pusher(USER, "app", "k2", "http", "A", "B", None, "en", {}, "OTHER"), 1, append=True)
    removed = await store.delete_for_devices(USER, ["DEV"])
    assert [p.pushkey for p in removed] == ["k1"]
    assert [p.pushkey for p in await store.list_for_user(USER)] == ["k2"]


async def _member(db: Database, room_id: str, membership: str) -> None:
    await db.execute(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering, sender)"
        " VALUES ($1, $2, $3, $4, 1, $2)",
        room_id,
        USER,
        membership,
        f"$m{room_id}",
    )


async def test_unread_in_range_and_badge(mdb: Database) -> None:
    actions = PushActionStore(mdb)
    rows = [
        (USER, f"$e{i}", room, i, "main", '["notify"]', i == 3, 1000 + i)
        for i, room in ((1, "!a:x"), (2, "!a:x"), (3, "!b:x"), (4, "!c:x"), (5, "!left:x"))
    ]
    rows.append(("@other:x", "$o", "!a:x", 6, "main", '["notify"]', False, 1))
    async with mdb.transaction() as conn:
        await actions.insert_txn(conn, rows)
    await _member(mdb, "!a:x", "join")
    await _member(mdb, "!b:x", "join")
    await _member(mdb, "!c:x", "invite")
    await _member(mdb, "!left:x", "leave")

    got = await actions.unread_for_user_in_range(USER, 1, 4, 10)
    assert [(a.event_id, a.stream_ordering, a.highlight, a.received_ts) for a in got] == [
        ("$e2", 2, False, 1002),
        ("$e3", 3, True, 1003),
        ("$e4", 4, False, 1004),
    ]
    assert got[0].actions == ["notify"]
    newest = await actions.unread_for_user_in_range(USER, 0, 10, 2, newest_first=True)
    assert [a.event_id for a in newest] == ["$e5", "$e4"]

    # Rooms joined with unread notifications (a, b) plus pending invites (c); left rooms never.
    assert await actions.badge_count(USER, group_by_room=True) == 3
    assert await actions.badge_count(USER, group_by_room=False) == 4  # 3 notifications + 1 invite
    await actions.mark_read(USER, "!a:x", 2, None)
    assert [a.event_id for a in await actions.unread_for_user_in_range(USER, 0, 10, 10)] == [
        "$e3",
        "$e4",
        "$e5",
    ]
    assert await actions.badge_count(USER, group_by_room=True) == 2
