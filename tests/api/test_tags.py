"""Room tags: GET/PUT/DELETE /user/{userId}/rooms/{roomId}/tags[/{tag}] (both engines), the m.tag
room account data in /sync with a long-poll wake-up, and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from synapse_compat_tests.spec_schema import assert_matches_spec

from .ephemeral_helpers import NO_PRESENCE, V3, User, assert_event_schema, parked, q, room_account_data

TAGS = "/user/{userId}/rooms/{roomId}/tags"
TAG = "/user/{userId}/rooms/{roomId}/tags/{tag}"


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config(**NO_PRESENCE)))


def _tags_path(user: User, room_id: str, tag: str | None = None) -> str:
    path = f"{V3}/user/{q(user.user_id)}/rooms/{q(room_id)}/tags"
    return path if tag is None else f"{path}/{q(tag)}"


async def get_tags(user: User, room_id: str) -> dict[str, Any]:
    status, body = await user.request("GET", _tags_path(user, room_id))
    assert_matches_spec("tags.yaml", TAGS, "GET", status, body)
    return dict(body["tags"])


async def put_tag(user: User, room_id: str, tag: str, body: dict[str, Any], expect: int = 200) -> Any:
    status, data = await user.request("PUT", _tags_path(user, room_id, tag), body, expect)
    if status == 200:
        assert_matches_spec("tags.yaml", TAG, "PUT", status, data)
    return data


async def test_tags_roundtrip_and_sync(hs: Any) -> None:
    alice = await User.new(hs)
    room_id = await alice.create_room()
    assert await get_tags(alice, room_id) == {}
    alice_sync = alice.stream()
    await alice_sync.sync()

    waiter = alice_sync.start()
    await parked(hs)
    await put_tag(alice, room_id, "m.favourite", {"order": 0.25})
    tagged = room_account_data(await waiter, room_id, "m.tag")
    assert tagged == [{"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.25}}}}]
    assert_event_schema(tagged[0])

    await put_tag(alice, room_id, "u.work", {})
    await put_tag(alice, room_id, "m.favourite", {"order": 1})  # replaces the tag's content
    assert await get_tags(alice, room_id) == {"m.favourite": {"order": 1}, "u.work": {}}
    status, body = await alice.request("DELETE", _tags_path(alice, room_id, "u.work"))
    assert_matches_spec("tags.yaml", TAG, "DELETE", status, body)
    await alice.delete(_tags_path(alice, room_id, "u.never-set"))  # deleting a missing tag is fine
    assert await get_tags(alice, room_id) == {"m.favourite": {"order": 1}}
    latest = room_account_data(await alice_sync.sync(), room_id, "m.tag")
    assert latest == [{"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 1}}}}]
    initial = room_account_data(await alice.sync(), room_id, "m.tag")
    assert initial == latest


async def test_tag_errors(hs: Any) -> None:
    alice = await User.new(hs)
    bob = await User.new(hs)
    room_id = await alice.create_room()
    # Bob may not read or write Alice's tags.
    err = await bob.request("GET", _tags_path(alice, room_id), expect=403)
    assert err[1]["errcode"] == "M_FORBIDDEN"
    err = await bob.request("PUT", _tags_path(alice, room_id, "u.x"), {}, expect=403)
    assert err[1]["errcode"] == "M_FORBIDDEN"
    # Tagging a room Bob has no membership in is refused.
    assert (await put_tag(bob, room_id, "u.x", {}, 403))["errcode"] == "M_FORBIDDEN"
    assert (await put_tag(alice, room_id, "u." + "x" * 254, {}, 400))["errcode"] == "M_INVALID_PARAM"
    assert (await put_tag(alice, room_id, "u.x", {"order": "first"}, 400))["errcode"] == "M_BAD_JSON"
    assert (await put_tag(alice, room_id, "u.x", {"order": True}, 400))["errcode"] == "M_BAD_JSON"
    await put_tag(alice, room_id, "u." + "x" * 253, {})  # exactly 255 bytes
