"""Inbound EDUs (typing, receipts, presence, to-device) dispatched through the federation EDU
registry as PUT /send hands them over, and seen by local clients in /sync; the checks: users of
the origin only, joined members only, room ACLs, malformed content ignored, to-device dedupe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config.sections import HomeserverConfig
from homeserver.persist.local import EventDraft
from homeserver.services import typing as typing_service
from synapse_compat_tests.spec_schema import definition_ref, validate

from ..conftest import services_of
from .ephemeral_helpers import V3, User, ephemeral, presence_of, q

REMOTE = "remote.example"
BOB = f"@bob:{REMOTE}"
CAROL = f"@carol:{REMOTE}"  # a user of the remote server who is in no room with us


@pytest.fixture
async def hs(aiohttp_client: Any, engine_config: Callable[..., HomeserverConfig]) -> Any:
    return await aiohttp_client(create_app_from_config(engine_config()))


async def remote_join(client: Any, room_id: str, user_id: str) -> None:
    """A remote user's join, persisted directly (the membership handshake is tested elsewhere)."""
    await services_of(client).persister.send_one(
        EventDraft(room_id, "m.room.member", user_id, {"membership": "join"}, state_key=user_id)
    )


async def dispatch(client: Any, origin: str, edu_type: str, content: Any) -> None:
    await services_of(client).federation_edus.dispatch(origin, edu_type, content)


async def dispatch_valid(client: Any, origin: str, edu_type: str, content: Any) -> None:
    """An EDU the spec's schema accepts (so the accepted cases are what real servers send)."""
    ref = definition_ref(f"definitions/event-schemas/{edu_type}.yaml", api="server-server")
    validate(ref, {"edu_type": edu_type, "content": content}, edu_type)
    await dispatch(client, origin, edu_type, content)


async def _room(client: Any) -> tuple[User, str]:
    alice = await User.new(client)
    room_id = await alice.create_room()
    await remote_join(client, room_id, BOB)
    return alice, room_id


async def test_typing(hs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, room_id = await _room(hs)
    typing = services_of(hs).typing
    stream = alice.stream()
    await stream.sync()

    await dispatch_valid(hs, REMOTE, "m.typing", {"room_id": room_id, "user_id": BOB, "typing": True})
    body = await stream.sync(timeout_ms=10_000)
    assert ephemeral(body, room_id, "m.typing")[0]["content"] == {"user_ids": [BOB]}
    await dispatch(hs, REMOTE, "m.typing", {"room_id": room_id, "user_id": BOB, "typing": False})
    assert typing.typing_users(room_id) == []

    ignored: list[tuple[str, Any]] = [
        (REMOTE, {"room_id": room_id, "user_id": CAROL, "typing": True}),  # not joined
        ("other.example", {"room_id": room_id, "user_id": BOB, "typing": True}),  # not its user
        (REMOTE, {"room_id": "!nowhere:test.local", "user_id": BOB, "typing": True}),  # unknown room
        (REMOTE, {"room_id": room_id, "user_id": BOB, "typing": "yes"}),
        (REMOTE, {"room_id": 5, "user_id": BOB, "typing": True}),
        (REMOTE, {"room_id": room_id, "user_id": ["x"], "typing": True}),
        (REMOTE, {}),
        (REMOTE, []),  # not an object
        ("test.local", {"room_id": room_id, "user_id": alice.user_id, "typing": True}),  # us?
    ]
    for origin, content in ignored:
        await dispatch(hs, origin, "m.typing", content)
        assert typing.typing_users(room_id) == [], content

    # A room ACL that denies the origin drops its typing notifications.
    await alice.put(
        f"{V3}/rooms/{q(room_id)}/state/m.room.server_acl/",
        {"allow": ["*"], "deny": [REMOTE]},
    )
    await dispatch(hs, REMOTE, "m.typing", {"room_id": room_id, "user_id": BOB, "typing": True})
    assert typing.typing_users(room_id) == []
    await alice.put(f"{V3}/rooms/{q(room_id)}/state/m.room.server_acl/", {"allow": ["*"]})

    # Remote typing expires by itself, like local typing.
    monkeypatch.setattr(typing_service, "FEDERATION_TIMEOUT_MS", 50)
    await stream.sync()
    await dispatch(hs, REMOTE, "m.typing", {"room_id": room_id, "user_id": BOB, "typing": True})
    assert typing.typing_users(room_id) == [BOB]
    expired = await stream.until(
        lambda b: [e for e in ephemeral(b, room_id, "m.typing") if e["content"]["user_ids"] == []]
    )
    assert expired


async def test_receipts(hs: Any) -> None:
    alice, room_id = await _room(hs)
    event_id = await alice.send(room_id)
    stream = alice.stream()
    await stream.sync()

    def receipt(user_id: str, event: str = event_id, **data: Any) -> dict[str, Any]:
        return {user_id: {"event_ids": [event], "data": {"ts": 1234, **data}}}

    await dispatch_valid(hs, REMOTE, "m.receipt", {room_id: {"m.read": receipt(BOB)}})
    body = await stream.sync(timeout_ms=10_000)
    [event] = ephemeral(body, room_id, "m.receipt")
    assert event["content"] == {event_id: {"m.read": {BOB: {"ts": 1234}}}}

    # Threaded receipts keep their thread.
    await dispatch_valid(hs, REMOTE, "m.receipt", {room_id: {"m.read": receipt(BOB, thread_id="main")}})
    body = await stream.sync(timeout_ms=10_000)
    [event] = ephemeral(body, room_id, "m.receipt")
    assert event["content"][event_id]["m.read"][BOB]["thread_id"] == "main"

    receipts = services_of(hs).receipts

    async def stored() -> list[Any]:
        return [r for r in (await receipts.room_receipts(room_id)).values() if r.user_id != BOB]

    ignored: list[tuple[str, Any]] = [
        (REMOTE, {room_id: {"m.read": receipt(CAROL)}}),  # not joined
        ("other.example", {room_id: {"m.read": receipt(f"@x:{REMOTE}")}}),  # not its user
        (REMOTE, {room_id: {"m.read": receipt("@x:other.example")}}),  # not the origin's user
        (REMOTE, {room_id: {"m.read.private": receipt(f"@y:{REMOTE}")}}),  # never over federation
        (REMOTE, {room_id: {"m.read": {f"@z:{REMOTE}": {"event_ids": [], "data": {}}}}}),
        (REMOTE, {room_id: {"m.read": {f"@z:{REMOTE}": {"event_ids": "$x", "data": {}}}}}),
        (REMOTE, {room_id: {"m.read": {f"@z:{REMOTE}": "nonsense"}}}),
        (REMOTE, {room_id: {"m.read": receipt(f"@z:{REMOTE}", thread_id=7)}}),
        (REMOTE, {room_id: "nonsense"}),
        (REMOTE, {"!unknown:test.local": {"m.read": receipt(BOB)}}),
        (REMOTE, {"not a room": {"m.read": receipt(BOB)}}),
    ]
    for origin, content in ignored:
        await dispatch(hs, origin, "m.receipt", content)
    assert await stored() == []

    # Unknown events and events of other rooms are ignored; so is a receipt moving backwards.
    other_room = await alice.create_room()
    other_event = await alice.send(other_room)
    await dispatch(hs, REMOTE, "m.receipt", {room_id: {"m.read": receipt(BOB, event="$unknown")}})
    await dispatch(hs, REMOTE, "m.receipt", {room_id: {"m.read": receipt(BOB, event=other_event)}})
    bob_receipts = [r for r in (await receipts.room_receipts(room_id)).values() if r.user_id == BOB]
    assert {r.event_id for r in bob_receipts} == {event_id}

    # ACL: every receipt of a room that denies the origin is ignored.
    later = await alice.send(room_id)
    await alice.put(
        f"{V3}/rooms/{q(room_id)}/state/m.room.server_acl/", {"allow": ["*"], "deny": ["remote.*"]}
    )
    await dispatch(hs, REMOTE, "m.receipt", {room_id: {"m.read": receipt(BOB, event=later)}})
    bob_receipts = [r for r in (await receipts.room_receipts(room_id)).values() if r.user_id == BOB]
    assert later not in {r.event_id for r in bob_receipts}


async def test_presence(hs: Any) -> None:
    alice, _ = await _room(hs)
    presence = services_of(hs).presence
    stream = alice.stream()
    await stream.sync()

    update = {"user_id": BOB, "presence": "online", "last_active_ago": 1000, "currently_active": True}
    await dispatch_valid(hs, REMOTE, "m.presence", {"push": [update]})
    body = await stream.until(lambda b: presence_of(b, BOB))
    assert body["content"]["presence"] == "online" and body["content"]["currently_active"] is True

    await dispatch(
        hs,
        REMOTE,
        "m.presence",
        {"push": [{"user_id": BOB, "presence": "unavailable", "last_active_ago": 5, "status_msg": "away"}]},
    )
    body = await stream.until(lambda b: presence_of(b, BOB))
    assert body["content"]["presence"] == "unavailable" and body["content"]["status_msg"] == "away"

    ignored: list[tuple[str, Any]] = [
        (REMOTE, {"push": [{"user_id": CAROL, "presence": "online", "last_active_ago": 0}]}),  # no room
        ("other.example", {"push": [{"user_id": BOB, "presence": "online", "last_active_ago": 0}]}),
        (REMOTE, {"push": [{"user_id": BOB, "presence": "dancing", "last_active_ago": 0}]}),
        (REMOTE, {"push": [{"user_id": BOB, "presence": "online", "last_active_ago": "long"}]}),
        (REMOTE, {"push": [{"user_id": BOB, "presence": "online", "status_msg": 5}]}),
        (REMOTE, {"push": ["nonsense", None]}),
        (REMOTE, {"push": "nonsense"}),
    ]
    for origin, content in ignored:
        await dispatch(hs, origin, "m.presence", content)
    assert (await presence.get_state(BOB)).state == "unavailable"
    assert (await presence.get_state(CAROL)).state == "offline"

    # A remote user their server stops telling us about goes offline.
    presence.federation_timeout_ms = 0
    await dispatch(hs, REMOTE, "m.presence", {"push": [update]})
    await stream.until(lambda b: (presence_of(b, BOB) or {}).get("content", {}).get("presence") == "offline")
    assert (await presence.get_state(BOB)).state == "offline"


async def test_to_device(hs: Any) -> None:
    alice = await User.new(hs)
    second = await _login(hs, alice.user_id)
    streams = [alice.stream(), second.stream()]
    for stream in streams:
        await stream.sync()

    def edu(message_id: str, messages: dict[str, Any], sender: str = BOB) -> dict[str, Any]:
        return {
            "sender": sender,
            "type": "m.room_key_request",
            "message_id": message_id,
            "messages": messages,
        }

    await dispatch_valid(
        hs, REMOTE, "m.direct_to_device", edu("m1", {alice.user_id: {alice.device_id: {"n": 1}}})
    )
    body = await streams[0].sync(timeout_ms=10_000)
    assert body["to_device"]["events"] == [{"sender": BOB, "type": "m.room_key_request", "content": {"n": 1}}]

    # '*': every device of the user; the same message id again is a retransmission.
    for _ in range(2):
        await dispatch(hs, REMOTE, "m.direct_to_device", edu("m2", {alice.user_id: {"*": {"n": 2}}}))
    for stream in streams:
        body = await stream.sync(timeout_ms=10_000)
        assert [e["content"] for e in body["to_device"]["events"]] == [{"n": 2}]
    # another origin may use the same message id
    other = edu("m2", {alice.user_id: {"*": {"n": 3}}}, sender="@x:elsewhere.example")
    await dispatch(hs, "elsewhere.example", "m.direct_to_device", other)

    ignored: list[tuple[str, Any]] = [
        ("other.example", edu("m4", {alice.user_id: {"*": {"n": 4}}})),  # sender not of the origin
        (REMOTE, edu("m5", {"@dave:third.example": {"*": {"n": 5}}})),  # not our user
        (REMOTE, edu("m6", {alice.user_id: {"NOSUCHDEVICE": {"n": 6}}})),
        (REMOTE, edu("m7", {alice.user_id: {alice.device_id: "not an object"}})),
        (REMOTE, edu("", {alice.user_id: {"*": {"n": 8}}})),
        (REMOTE, edu("m9", "nonsense")),  # type: ignore[arg-type]
        (REMOTE, {"sender": BOB, "type": 5, "message_id": "m10", "messages": {}}),
        (REMOTE, {}),
    ]
    for origin, content in ignored:
        await dispatch(hs, origin, "m.direct_to_device", content)
    body = await streams[0].sync(timeout_ms=0)
    contents = [e["content"] for e in body.get("to_device", {}).get("events", [])]
    assert contents == [{"n": 3}]


async def _login(client: Any, user_id: str) -> User:
    resp = await client.post(
        "/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": "pass-word-1",
        },
    )
    body = await resp.json()
    assert resp.status == 200, body
    return User(client, body)


async def test_unknown_edu_type_and_handler_failures_never_raise(hs: Any) -> None:
    await dispatch(hs, REMOTE, "m.something_new", {"a": 1})
    # A store failure inside a handler is logged, not raised to /send.
    services = services_of(hs)
    _, room_id = await _room(hs)

    async def broken(*_args: Any, **_kwargs: Any) -> bool:
        raise RuntimeError("boom")

    services.typing.receive_remote = broken  # type: ignore[method-assign]
    await dispatch(hs, REMOTE, "m.typing", {"room_id": room_id, "user_id": BOB, "typing": True})
    await asyncio.sleep(0)
