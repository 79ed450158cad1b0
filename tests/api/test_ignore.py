"""Ignoring users (m.ignored_user_list): their messages disappear from /sync and /messages (state
events stay), their invites are not sent, and un-ignoring resumes delivery (both engines)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig

from ..conftest import services_of
from .ephemeral_helpers import NO_PRESENCE, V3, User, q, timeline_ids


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


async def ignore(user: User, *others: User) -> None:
    content = {"ignored_users": {o.user_id: {} for o in others}}
    await user.put(f"{V3}/user/{q(user.user_id)}/account_data/m.ignored_user_list", content)


async def messages(user: User, room_id: str) -> list[dict[str, Any]]:
    body = await user.get(f"{V3}/rooms/{q(room_id)}/messages", dir="b", limit=50)
    return list(body["chunk"])


async def test_ignored_users_messages_are_hidden(hs: Any) -> None:
    alice, bob, carol = await User.new(hs), await User.new(hs), await User.new(hs)
    room_id = await alice.create_room(power_level_content_override={"state_default": 0})
    await bob.join(room_id)
    await carol.join(room_id)
    assert await services_of(hs).ignore.ignored_by(alice.user_id) == frozenset()
    alice_sync = alice.stream()
    await alice_sync.sync()

    await ignore(alice, bob)
    await alice_sync.sync()
    from_bob = await bob.send(room_id, "you will not see this")
    from_carol = await carol.send(room_id, "but this")
    topic = f"{V3}/rooms/{q(room_id)}/state/m.room.topic/"
    bob_state = (await bob.put(topic, {"topic": "set by Bob"}))["event_id"]

    seen = timeline_ids(await alice_sync.sync(), room_id)
    assert from_bob not in seen
    assert from_carol in seen and bob_state in seen  # state events from ignored users stay
    initial = timeline_ids(await alice.sync(), room_id)
    assert from_bob not in initial and from_carol in initial
    chunk_ids = [e["event_id"] for e in await messages(alice, room_id)]
    assert from_bob not in chunk_ids and from_carol in chunk_ids and bob_state in chunk_ids
    # Others still see Bob.
    assert from_bob in [e["event_id"] for e in await messages(carol, room_id)]

    # Un-ignoring: new messages come through again.
    await ignore(alice)
    again = await bob.send(room_id, "hello again")
    assert again in timeline_ids(await alice_sync.sync(), room_id)


async def test_invites_from_ignored_users_are_not_sent(hs: Any) -> None:
    alice, bob, carol = await User.new(hs), await User.new(hs), await User.new(hs)
    await ignore(alice, bob)
    alice_sync = alice.stream()
    await alice_sync.sync()

    from_bob = await bob.create_room()
    await bob.invite(from_bob, alice.user_id)
    from_carol = await carol.create_room()
    await carol.invite(from_carol, alice.user_id)

    invites = (await alice_sync.sync())["rooms"]["invite"]
    assert from_carol in invites and from_bob not in invites
    invites = (await alice.sync())["rooms"]["invite"]
    assert from_carol in invites and from_bob not in invites
