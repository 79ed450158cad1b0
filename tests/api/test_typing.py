"""Typing notifications: the endpoint, m.typing in /sync, long-poll wake-ups, expiry by the room's
timer (waiting on sync tokens), leaving stops typing, and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig

from .ephemeral_helpers import NO_PRESENCE, V3, User, assert_event_schema, ephemeral, parked, q


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


async def _room_with(client: Any) -> tuple[User, User, str]:
    alice = await User.new(client)
    bob = await User.new(client)
    room_id = await alice.create_room()
    await bob.join(room_id)
    return alice, bob, room_id


def _typing(body: dict[str, Any], room_id: str) -> list[str] | None:
    events = ephemeral(body, room_id, "m.typing")
    if not events:
        return None
    assert len(events) == 1
    assert_event_schema(events[0])
    return list(events[0]["content"]["user_ids"])


async def test_typing_wakes_members_and_stops(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    bob_sync = bob.stream()
    await bob_sync.sync()

    waiter = bob_sync.start()
    await parked(hs)
    assert await alice.typing(room_id, True, 30_000) == {}
    assert _typing(await waiter, room_id) == [alice.user_id]

    # Typing again only renews the timeout: no change to send.
    await alice.typing(room_id, True, 30_000)
    assert _typing(await bob_sync.sync(), room_id) is None

    # An initial sync shows who is typing now.
    assert _typing(await bob.sync(), room_id) == [alice.user_id]

    waiter = bob_sync.start()
    await parked(hs)
    await alice.typing(room_id, False)
    assert _typing(await waiter, room_id) == []
    assert _typing(await bob.sync(), room_id) is None


async def test_typing_expires_by_itself(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    bob_sync = bob.stream()
    await bob_sync.sync()
    await alice.typing(room_id, True, 300)
    assert _typing(await bob_sync.sync(), room_id) == [alice.user_id]
    # No request stops it: the room's timer does, and that wakes the long-poll.
    assert _typing(await bob_sync.sync(timeout_ms=30_000), room_id) == []


async def test_leaving_stops_typing(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    alice_sync = alice.stream()
    await alice_sync.sync()
    await bob.typing(room_id, True, 30_000)
    assert _typing(await alice_sync.sync(), room_id) == [bob.user_id]
    await bob.leave(room_id)
    # The leave (timeline) and the typing change may come in one sync or two.
    for _ in range(5):
        typing = _typing(await alice_sync.sync(timeout_ms=10_000), room_id)
        if typing is not None:
            break
    assert typing == []


async def test_typing_errors(hs: Any) -> None:
    alice, bob, room_id = await _room_with(hs)
    outsider = await User.new(hs)
    path = f"{V3}/rooms/{q(room_id)}/typing/{q(alice.user_id)}"
    assert (await bob.put(path, {"typing": True}, 403))["errcode"] == "M_FORBIDDEN"
    assert (await outsider.typing(room_id, True, expect=403))["errcode"] == "M_FORBIDDEN"
    assert (await alice.put(path, {"timeout": 5}, 400))["errcode"] == "M_MISSING_PARAM"
    assert (await alice.put(path, {"typing": "yes"}, 400))["errcode"] == "M_BAD_JSON"
    assert (await alice.put(path, {"typing": True, "timeout": "x"}, 400))["errcode"] == "M_BAD_JSON"
    bad_user = f"{V3}/rooms/{q(room_id)}/typing/nobody"
    assert (await alice.put(bad_user, {"typing": True}, 400))["errcode"] == "M_INVALID_PARAM"
    # Stopping when not typing is fine, and typing needs no timeout.
    await alice.typing(room_id, False)
    await alice.typing(room_id, True)
