"""Lazy-loaded members are tracked per device and filter (homeserver/sync/lazy_members.py).

The black-box side (no repeats, changed members sent again) is in synapse_compat_tests/test_sync.py;
here are the cases where we go beyond Synapse: a response the client never received (it syncs
again from the older token) does not count as received, `full_state=true` starts afresh, and
another device or filter has its own record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig

from .ephemeral_helpers import NO_PRESENCE, V3, User

# A timeline of one event keeps joins out of the timeline, so member events come in `state`.
LAZY = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
REDUNDANT_STATE = {"lazy_load_members": True, "include_redundant_members": True}
REDUNDANT = {"room": {"state": REDUNDANT_STATE, "timeline": {"limit": 1}}}


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


def members(body: dict[str, Any], room_id: str) -> set[str]:
    room = body["rooms"]["join"].get(room_id) or {}
    return {e["state_key"] for e in room.get("state", {}).get("events", []) if e["type"] == "m.room.member"}


async def setup(hs: Any) -> tuple[User, User, str]:
    alice, bob = await User.new(hs), await User.new(hs)
    room_id = await alice.create_room(name="lazy")
    await bob.join(room_id)
    await alice.send(room_id, "welcome")
    return alice, bob, room_id


async def test_member_sent_again_when_response_was_lost(hs: Any) -> None:
    alice, _, room_id = await setup(hs)
    carol = await User.new(hs)
    await carol.join(room_id)
    await alice.send(room_id, "welcome, carol")
    t0 = (await alice.sync(filter=LAZY))["next_batch"]
    await carol.send(room_id, "hi from carol")
    got = await alice.sync(t0, filter=LAZY)
    assert carol.user_id in members(got, room_id)
    # That response is lost: Alice syncs from t0 again and must get Carol's member event again.
    retry = await alice.sync(t0, filter=LAZY)
    assert carol.user_id in members(retry, room_id)
    # Now she builds on the retry's token: no repeats any more.
    await carol.send(room_id, "again")
    later = await alice.sync(retry["next_batch"], filter=LAZY)
    assert carol.user_id not in members(later, room_id)


async def test_full_state_starts_afresh(hs: Any) -> None:
    alice, bob, room_id = await setup(hs)
    token = (await alice.sync(filter=LAZY))["next_batch"]
    await bob.send(room_id, "one")
    token = (await alice.sync(token, filter=LAZY))["next_batch"]
    await bob.send(room_id, "two")
    body = await alice.sync(token, filter=LAZY)
    assert bob.user_id not in members(body, room_id)
    full = await alice.sync(body["next_batch"], filter=LAZY, full_state="true")
    assert {alice.user_id, bob.user_id} <= members(full, room_id)
    await bob.send(room_id, "three")
    after = await alice.sync(full["next_batch"], filter=LAZY)
    assert bob.user_id not in members(after, room_id)


async def test_redundant_members_when_asked(hs: Any) -> None:
    alice, bob, room_id = await setup(hs)
    token = (await alice.sync(filter=REDUNDANT))["next_batch"]
    for text in ("one", "two"):
        await bob.send(room_id, text)
        body = await alice.sync(token, filter=REDUNDANT)
        token = body["next_batch"]
        assert bob.user_id in members(body, room_id)


async def test_each_device_and_filter_has_its_own_record(hs: Any) -> None:
    alice, bob, room_id = await setup(hs)
    token = (await alice.sync(filter=LAZY))["next_batch"]
    resp = await hs.post(
        f"{V3}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": alice.user_id},
            "password": "pass-word-1",
        },
    )
    other_device = User(hs, await resp.json())
    other_token = (await other_device.sync(filter=LAZY))["next_batch"]
    await bob.send(room_id, "one")
    token = (await alice.sync(token, filter=LAZY))["next_batch"]
    await bob.send(room_id, "two")
    assert bob.user_id not in members(await alice.sync(token, filter=LAZY), room_id)
    # The other device has been sent nothing about Bob yet.
    assert bob.user_id in members(await other_device.sync(other_token, filter=LAZY), room_id)
    # Nor has another filter on the first device.
    other_filter = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
    assert bob.user_id in members(await alice.sync(token, filter=other_filter), room_id)
