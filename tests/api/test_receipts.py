"""Receipts and read markers: endpoints, /sync delivery and wake-ups, private receipts, threads,
forward-only moves, the receipt hook, and storage across a restart (both engines)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig

from ..conftest import services_of
from .ephemeral_helpers import (
    NO_PRESENCE,
    V3,
    User,
    assert_event_schema,
    ephemeral,
    parked,
    q,
    room_account_data,
)


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    """The app on each engine, presence off (receipts bump presence, which would wake syncs)."""
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


async def _room_with(hs: Any) -> tuple[User, User, str]:
    alice = await User.new(hs)
    bob = await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    return alice, bob, room_id


def _receipt_rows(body: dict[str, Any], room_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(event_id, receipt type, user, data) of every receipt in the room's m.receipt events."""
    rows = []
    for event in ephemeral(body, room_id, "m.receipt"):
        assert_event_schema(event)
        for event_id, types in event["content"].items():
            for rtype, users in types.items():
                rows.extend((event_id, rtype, user, data) for user, data in users.items())
    return rows


def _receipts(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    """Unthreaded view: event_id -> type -> user -> data (threaded receipts not mixed in)."""
    merged: dict[str, Any] = {}
    for event_id, rtype, user, data in _receipt_rows(body, room_id):
        if "thread_id" not in data:
            merged.setdefault(event_id, {}).setdefault(rtype, {})[user] = data
    return merged


async def test_receipt_reaches_members_and_wakes_long_poll(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    event_id = await alice.send(room_id, "read me")
    bob_sync = bob.stream()
    await bob_sync.sync()

    waiter = bob_sync.start()
    await parked(hs)
    assert await bob.receipt(room_id, event_id) == {}
    body = await waiter
    receipts = _receipts(body, room_id)
    assert list(receipts) == [event_id]
    assert set(receipts[event_id]["m.read"]) == {bob.user_id}
    assert isinstance(receipts[event_id]["m.read"][bob.user_id]["ts"], int)
    assert "thread_id" not in receipts[event_id]["m.read"][bob.user_id]

    # Alice sees it on an initial sync and on an incremental one; nothing repeats afterwards.
    initial = await alice.sync()
    assert bob.user_id in _receipts(initial, room_id)[event_id]["m.read"]
    again = await bob_sync.sync()
    assert _receipts(again, room_id) == {}


async def test_private_receipts_only_reach_their_owner(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    event_id = await alice.send(room_id)
    alice_sync, bob_sync = alice.stream(), bob.stream()
    await alice_sync.sync()
    await bob_sync.sync()

    own = alice_sync.start()
    await parked(hs)
    await bob.receipt(room_id, event_id, "m.read.private")
    # Alice's long-poll is not woken by Bob's private receipt: it times out empty.
    other = await alice_sync.sync(timeout_ms=300)
    own.cancel()
    assert _receipts(other, room_id) == {}
    mine = _receipt_rows(await bob_sync.sync(), room_id)
    assert [(e, r, u) for e, r, u, _ in mine] == [(event_id, "m.read.private", bob.user_id)]
    assert _receipts(await alice.sync(), room_id) == {}
    assert bob.user_id in _receipts(await bob.sync(), room_id)[event_id]["m.read.private"]


async def test_receipts_only_move_forward(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    first = await alice.send(room_id, "1")
    second = await alice.send(room_id, "2")
    await bob.receipt(room_id, second)
    bob_sync = bob.stream()
    await bob_sync.sync()
    await bob.receipt(room_id, first)  # behind: ignored
    await bob.receipt(room_id, second)  # the same event: no new receipt
    assert _receipts(await bob_sync.sync(), room_id) == {}
    initial = _receipts(await alice.sync(), room_id)
    assert list(initial) == [second]
    rows = await services_of(hs).receipts.store.list_room(room_id)
    assert [(r.user_id, r.event_id) for r in rows] == [(bob.user_id, second)]


async def test_threaded_receipts(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    root = await alice.send(room_id, "root")
    reply = await alice.send(
        room_id, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    )
    main = await alice.send(room_id, "main")

    await bob.receipt(room_id, reply, thread_id=root)
    await bob.receipt(room_id, root, thread_id=root)  # the root belongs to its thread, behind: kept
    await bob.receipt(room_id, main, thread_id="main")
    await bob.receipt(room_id, main)  # unthreaded, separate from both
    for bad in ({"thread_id": ""}, {"thread_id": 5}):
        err = await bob.receipt(room_id, main, expect=400, **bad)
        assert err["errcode"] == "M_INVALID_PARAM"
    assert (await bob.receipt(room_id, reply, expect=400, thread_id="main"))["errcode"] == "M_INVALID_PARAM"
    assert (await bob.receipt(room_id, main, expect=400, thread_id=root))["errcode"] == "M_INVALID_PARAM"
    err = await bob.receipt(room_id, main, "m.fully_read", expect=400, thread_id="main")
    assert err["errcode"] == "M_INVALID_PARAM"

    rows = _receipt_rows(await alice.sync(), room_id)
    seen = sorted((e, r, u, d.get("thread_id", "")) for e, r, u, d in rows)
    assert seen == sorted(
        [
            (reply, "m.read", bob.user_id, root),
            (main, "m.read", bob.user_id, "main"),
            (main, "m.read", bob.user_id, ""),
        ]
    )
    # One m.receipt event per thread.
    assert len(ephemeral(await alice.sync(), room_id, "m.receipt")) == 3
    rows = await services_of(hs).receipts.store.list_user_receipts(bob.user_id, room_id)
    assert sorted((r.thread_id or "", r.event_id) for r in rows) == sorted(
        [("", main), ("main", main), (root, reply)]
    )


async def test_receipt_errors(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    event_id = await alice.send(room_id)
    outsider = await User.new(hs)
    assert (await bob.receipt(room_id, event_id, "m.nope", expect=400))["errcode"] == "M_INVALID_PARAM"
    assert (await outsider.receipt(room_id, event_id, expect=403))["errcode"] == "M_FORBIDDEN"
    # An unknown event is ignored (as Synapse does), a fully-read marker on it is not found.
    await bob.receipt(room_id, "$unknown")
    assert (await bob.receipt(room_id, "$unknown", "m.fully_read", expect=404))["errcode"] == "M_NOT_FOUND"
    path = f"{V3}/rooms/{q('not-a-room')}/receipt/m.read/{q(event_id)}"
    assert (await bob.post(path, {}, expect=400))["errcode"] == "M_INVALID_PARAM"
    path = f"{V3}/rooms/{q(room_id)}/read_markers"
    assert (await bob.post(path, {"m.read": 5}, expect=400))["errcode"] == "M_INVALID_PARAM"


async def test_read_markers_and_fully_read(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    first = await alice.send(room_id, "1")
    second = await alice.send(room_id, "2")
    bob_sync = bob.stream()
    await bob_sync.sync()

    waiter = bob_sync.start()
    await parked(hs)
    path = f"{V3}/rooms/{q(room_id)}/read_markers"
    body = {"m.fully_read": second, "m.read": second, "m.read.private": first, "org.example.x": "y"}
    assert await bob.post(path, body) == {}
    result = await waiter
    markers = room_account_data(result, room_id, "m.fully_read")
    if not markers:  # the receipts and the account data may arrive in two syncs
        result = await bob_sync.sync()
        markers = room_account_data(result, room_id, "m.fully_read")
    assert markers == [{"type": "m.fully_read", "content": {"event_id": second}}]

    # Backwards: ignored. The account data endpoint refuses m.fully_read.
    await bob.receipt(room_id, first, "m.fully_read")
    content = await bob.get(f"{V3}/user/{q(bob.user_id)}/rooms/{q(room_id)}/account_data/m.fully_read")
    assert content == {"event_id": second}
    path = f"{V3}/user/{q(bob.user_id)}/rooms/{q(room_id)}/account_data/m.fully_read"
    status, _ = await bob.request("PUT", path, {"event_id": first}, expect=None)
    assert status in (400, 405)
    receipts = _receipts(await bob.sync(), room_id)
    assert receipts[second]["m.read"][bob.user_id]
    assert receipts[first]["m.read.private"][bob.user_id]


async def test_receipt_hook(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    first = await alice.send(room_id, "1")
    second = await alice.send(room_id, "2")
    third = await alice.send(room_id, "3")
    calls: list[tuple[Any, ...]] = []

    async def hook(*args: Any) -> None:
        calls.append(args)

    receipts = services_of(hs).receipts
    receipts.receipt_hooks.append(hook)
    ordering = {e: (await receipts.events.get_event(e)).stream_ordering for e in (first, second, third)}  # type: ignore[union-attr]
    await bob.receipt(room_id, second, "m.read.private")
    await bob.receipt(room_id, first)  # public behind private: the read position does not move
    await bob.receipt(room_id, first)  # no move at all
    await bob.receipt(room_id, third, thread_id="main")
    assert calls == [
        (bob.user_id, room_id, None, second, ordering[second]),
        (bob.user_id, room_id, "main", third, ordering[third]),
    ]


async def test_receipts_survive_restart(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    config = engine_config(**NO_PRESENCE)
    client = await aiohttp_client(create_app_from_config(config))
    alice, bob, room_id = await _room_with(client)
    event_id = await alice.send(room_id)
    old_token = (await alice.sync())["next_batch"]
    await bob.receipt(room_id, event_id, "m.read")
    await bob.receipt(room_id, event_id, "m.read.private")
    await client.close()

    client = await aiohttp_client(create_app_from_config(config))
    alice.client = bob.client = client
    # An incremental sync from a token of the previous run (read from the database).
    receipts = _receipts(await alice.sync(old_token), room_id)
    assert receipts == {event_id: {"m.read": {bob.user_id: receipts[event_id]["m.read"][bob.user_id]}}}
    mine = _receipts(await bob.sync(), room_id)
    assert set(mine[event_id]) == {"m.read", "m.read.private"}


def test_change_log() -> None:
    """The in-memory change log the ephemeral streams use for "what changed since"."""
    from homeserver.services.changelog import ChangeLog

    log: ChangeLog[str] = ChangeLog(floor=10, keep=3)
    assert log.changed(9, {"a"}) is None  # older than the log: the caller asks the database
    assert log.changed(10, {"a"}) == set()
    log.add(11, "a")
    log.add(13, "b")
    log.add(12, "c")  # completed out of order
    assert log.keys_since(11) == ["c", "b"]
    assert log.changed(10, {"a", "b"}) == {"a", "b"}
    assert log.changed(12, {"a", "b", "c"}) == {"b"}
    # Few candidates, many changes: answered from the per-key positions.
    assert log.changed(10, {"c"}) == {"c"}
    for pos in range(14, 20):
        log.add(pos, "d")
    assert log.floor > 10 and log.changed(10, {"a"}) is None
    assert log.changed(log.floor, {"d", "a"}) == {"d"}
