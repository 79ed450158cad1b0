"""Presence: GET/PUT /presence/{userId}/status, set_presence on /sync, delivery only to users who
share a room, long-poll wake-ups, idle/offline timeouts (fake clock), presence disabled, and the
stored state across a restart (both engines)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.core.clock import FakeClock
from synapse_compat_tests.spec_schema import assert_matches_spec

from ..conftest import services_of
from .ephemeral_helpers import OPEN_LIMITS, V3, User, assert_event_schema, parked, presence_of, q

OPEN = {"rc_presence": {"per_user": OPEN_LIMITS}}
STATUS = "/presence/{userId}/status"


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**OPEN)))


@pytest.fixture
async def clocked(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> tuple[Any, FakeClock]:
    clock = FakeClock()
    client = await aiohttp_client(create_app_from_config(engine_config(**OPEN), clock=clock))
    return client, clock


async def get_presence(user: User, target: str, expect: int = 200) -> dict[str, Any]:
    status, body = await user.request("GET", f"{V3}/presence/{q(target)}/status", None, expect)
    assert_matches_spec("presence.yaml", STATUS, "GET", status, body)
    return dict(body)


async def set_presence(user: User, presence: str, status_msg: str | None = None, expect: int = 200) -> Any:
    body: dict[str, Any] = {"presence": presence}
    if status_msg is not None:
        body["status_msg"] = status_msg
    status, data = await user.request("PUT", f"{V3}/presence/{q(user.user_id)}/status", body, expect)
    assert_matches_spec("presence.yaml", STATUS, "PUT", status, data)
    return data


def _event(body: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    event = presence_of(body, user_id)
    if event is not None:
        assert_event_schema(event)
    return event


async def test_put_and_get_own_presence(hs: Any) -> None:
    alice = await User.new(hs)
    assert (await get_presence(alice, alice.user_id)) == {"presence": "offline"}
    await set_presence(alice, "online", "at my desk")
    got = await get_presence(alice, alice.user_id)
    assert got["presence"] == "online"
    assert got["status_msg"] == "at my desk"
    assert got["currently_active"] is True
    assert isinstance(got["last_active_ago"], int)

    await set_presence(alice, "unavailable")  # no status_msg: cleared, as Synapse does
    got = await get_presence(alice, alice.user_id)
    assert got["presence"] == "unavailable"
    assert "status_msg" not in got and "currently_active" not in got

    path = f"{V3}/presence/{q(alice.user_id)}/status"
    assert (await alice.put(path, {"presence": "busy-ish"}, 400))["errcode"] == "M_INVALID_PARAM"
    assert (await alice.put(path, {}, 400))["errcode"] == "M_MISSING_PARAM"
    assert (await alice.put(path, {"presence": "online", "status_msg": 3}, 400))["errcode"] == "M_BAD_JSON"
    bob = await User.new(hs)
    other = f"{V3}/presence/{q(bob.user_id)}/status"
    assert (await alice.put(other, {"presence": "online"}, 403))["errcode"] == "M_FORBIDDEN"
    assert (await alice.get(f"{V3}/presence/nobody/status", 400))["errcode"] == "M_INVALID_PARAM"


async def test_presence_visible_only_to_users_sharing_a_room(hs: Any) -> None:
    alice = await User.new(hs)
    bob = await User.new(hs)
    stranger = await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    await set_presence(alice, "online", "hello")

    assert (await get_presence(bob, alice.user_id))["status_msg"] == "hello"
    err = await get_presence(stranger, alice.user_id, 403)
    assert err["errcode"] == "M_FORBIDDEN"

    # Initial syncs: Bob sees Alice (and himself), the stranger sees only himself.
    bob_initial = await bob.sync(set_presence="online")
    assert _event(bob_initial, alice.user_id)["content"]["status_msg"] == "hello"  # type: ignore[index]
    assert _event(bob_initial, bob.user_id)["content"]["presence"] == "online"  # type: ignore[index]
    stranger_initial = await stranger.sync(set_presence=None)
    assert _event(stranger_initial, alice.user_id) is None
    assert _event(stranger_initial, stranger.user_id) is not None


async def test_presence_change_wakes_room_members(hs: Any) -> None:
    alice = await User.new(hs)
    bob = await User.new(hs)
    stranger = await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    bob_sync = bob.stream()
    stranger_sync = stranger.stream()
    await bob_sync.sync()
    await stranger_sync.sync()

    waiter = bob_sync.start()
    await parked(hs)
    await set_presence(alice, "unavailable", "lunch")
    event = _event(await waiter, alice.user_id)
    assert event is not None
    assert event["content"]["presence"] == "unavailable"
    assert event["content"]["status_msg"] == "lunch"
    assert _event(await stranger_sync.sync(), alice.user_id) is None
    # Nothing new: the next sync has no presence for Alice.
    assert _event(await bob_sync.sync(), alice.user_id) is None


async def test_set_presence_on_sync(hs: Any) -> None:
    alice = await User.new(hs)
    bob = await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    bob_sync = bob.stream()
    await bob_sync.sync()

    await alice.sync(set_presence="unavailable")
    seen = await bob_sync.until(lambda b: _event(b, alice.user_id))
    assert seen["content"]["presence"] == "unavailable"
    await alice.sync(set_presence=None)  # default: online
    seen = await bob_sync.until(lambda b: _event(b, alice.user_id))
    assert seen["content"]["presence"] == "online"
    assert seen["content"]["currently_active"] is True
    await alice.sync(set_presence="offline")  # leaves presence alone
    assert (await get_presence(bob, alice.user_id))["presence"] == "online"


async def test_presence_timeouts(clocked: tuple[Any, FakeClock]) -> None:
    client, clock = clocked
    presence = services_of(client).presence
    alice = await User.new(client)
    bob = await User.new(client)
    room_id = await alice.create_room()
    await bob.join(room_id)

    # A sync makes Alice online; 30 s after it ended she is offline.
    await alice.sync(set_presence=None)
    assert (await get_presence(bob, alice.user_id))["presence"] == "online"
    clock.advance(29_000)
    presence.check_timeouts()
    assert (await get_presence(bob, alice.user_id))["presence"] == "online"
    clock.advance(2_000)
    presence.check_timeouts()
    assert (await get_presence(bob, alice.user_id))["presence"] == "offline"

    # While a sync is running she stays online: after a minute she is no longer "currently
    # active", after 5 idle minutes unavailable; each change wakes her own long-poll.
    alice_sync = alice.stream(set_presence=None)
    await alice_sync.sync()
    waiter = alice_sync.start(timeout_ms=60_000)
    await parked(client)
    clock.advance(61_000)
    presence.check_timeouts()
    event = _event(await waiter, alice.user_id)
    assert event is not None and event["content"]["currently_active"] is False
    assert event["content"]["presence"] == "online"

    waiter = alice_sync.start(timeout_ms=60_000)
    await parked(client)
    clock.advance(5 * 60 * 1000)
    presence.check_timeouts()
    event = _event(await waiter, alice.user_id)
    assert event is not None and event["content"]["presence"] == "unavailable"
    got = await get_presence(bob, alice.user_id)
    assert got["presence"] == "unavailable" and got["last_active_ago"] >= 5 * 60 * 1000
    # A sync asking for online does not undo the idle state; activity does.
    await alice_sync.sync()
    assert (await get_presence(bob, alice.user_id))["presence"] == "unavailable"
    await alice.send(room_id, "back")
    got = await get_presence(bob, alice.user_id)
    for _ in range(100):  # the bump runs right after the commit
        if got["presence"] == "online":
            break
        got = await get_presence(bob, alice.user_id)
    assert got["presence"] == "online" and got["currently_active"] is True


async def test_presence_disabled(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> None:
    client = await aiohttp_client(create_app_from_config(engine_config(presence={"enabled": False}, **OPEN)))
    alice = await User.new(client)
    bob = await User.new(client)
    room_id = await alice.create_room()
    await bob.join(room_id)
    await set_presence(alice, "online", "here")
    assert await get_presence(bob, alice.user_id) == {"presence": "offline"}
    body = await bob.sync(set_presence=None)
    assert body["presence"]["events"] == []


async def test_presence_stored_across_restart(
    aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]
) -> None:
    config = engine_config(**OPEN)
    client = await aiohttp_client(create_app_from_config(config))
    alice = await User.new(client)
    bob = await User.new(client)
    room_id = await alice.create_room()
    await bob.join(room_id)
    old_token = (await bob.sync())["next_batch"]
    await set_presence(alice, "unavailable", "away")
    await client.close()

    client = await aiohttp_client(create_app_from_config(config))
    alice.client = bob.client = client
    got = await get_presence(bob, alice.user_id)
    assert got["presence"] == "unavailable" and got["status_msg"] == "away"
    # A token from before the restart still gets the change (read from the database).
    event = _event(await bob.sync(old_token), alice.user_id)
    assert event is not None and event["content"]["status_msg"] == "away"


async def test_write_behind_retries_after_a_database_outage(hs: Any) -> None:
    """The database was away when a change was flushed: the rows are written once it answers,
    without waiting for another change to trigger a flush."""
    import asyncio

    from homeserver.core.errors import DatabaseUnavailableError

    presence = services_of(hs).presence
    presence.FLUSH_DELAY_S = 0.05  # type: ignore[misc]
    store = presence.store
    real_upsert = store.upsert_many
    attempts: list[int] = []
    written = asyncio.Event()

    async def flaky_upsert(rows: Any) -> None:
        attempts.append(len(rows))
        if len(attempts) == 1:
            raise DatabaseUnavailableError("connection refused")
        await real_upsert(rows)
        written.set()

    store.upsert_many = flaky_upsert  # type: ignore[method-assign]
    alice = await User.new(hs)
    await set_presence(alice, "online", "through an outage")
    await asyncio.wait_for(written.wait(), 10)
    assert len(attempts) >= 2
    stored = await store.get_many([alice.user_id])
    assert stored[alice.user_id].status_msg == "through an outage"
