"""matrix-nio drives rooms end to end: DM, group, announcement room, edit, reaction, reply,
redaction, and pagination through 1,000 messages."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import nio
import pytest

from synapse_compat_tests.launcher import LaunchedServer


async def _user(server: LaunchedServer, name: str) -> nio.AsyncClient:
    localpart = f"{name}{secrets.token_hex(3)}"
    client = nio.AsyncClient(server.base_url, localpart)
    response = await client.register(localpart, "pw-" + localpart)
    assert isinstance(response, nio.RegisterResponse), response
    await client.sync(timeout=0)
    return client


@pytest.fixture
async def pair(server: LaunchedServer) -> AsyncIterator[tuple[nio.AsyncClient, nio.AsyncClient]]:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    try:
        yield alice, bob
    finally:
        await alice.close()
        await bob.close()


async def _sync_until(client: nio.AsyncClient, predicate, attempts: int = 20) -> nio.SyncResponse:
    for _ in range(attempts):
        response = await client.sync(timeout=5000, since=client.next_batch)
        assert isinstance(response, nio.SyncResponse), response
        if predicate(response):
            return response
    raise AssertionError("condition not reached through sync")


def _timeline(response: nio.SyncResponse, room_id: str) -> list[nio.Event]:
    room = response.rooms.join.get(room_id)
    return list(room.timeline.events) if room else []


async def test_dm_and_messaging_features(pair: tuple[nio.AsyncClient, nio.AsyncClient]) -> None:
    alice, bob = pair
    created = await alice.room_create(
        is_direct=True, invite=[bob.user_id], preset=nio.RoomPreset.trusted_private_chat
    )
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id

    await _sync_until(bob, lambda r: room_id in r.rooms.invite)
    joined = await bob.join(room_id)
    assert isinstance(joined, nio.JoinResponse), joined
    await alice.sync(timeout=0, since=alice.next_batch)

    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"})
    assert isinstance(sent, nio.RoomSendResponse), sent
    original = sent.event_id

    edit = await alice.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "* hello Bob",
            "m.new_content": {"msgtype": "m.text", "body": "hello Bob"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    assert isinstance(edit, nio.RoomSendResponse), edit
    reaction = await bob.room_send(
        room_id,
        "m.reaction",
        {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"},
        },
    )
    assert isinstance(reaction, nio.RoomSendResponse), reaction
    reply = await bob.room_send(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "> hello\n\nhi alice",
            "m.relates_to": {"m.in_reply_to": {"event_id": original}},
        },
    )
    assert isinstance(reply, nio.RoomSendResponse), reply
    redaction = await alice.room_redact(room_id, edit.event_id, reason="typo")
    assert isinstance(redaction, nio.RoomRedactResponse), redaction

    seen: dict[str, nio.Event] = {}

    def collect(response: nio.SyncResponse) -> bool:
        for event in _timeline(response, room_id):
            seen[event.event_id] = event
        return redaction.event_id in seen

    await _sync_until(bob, collect)
    assert isinstance(seen[original], nio.RoomMessageText)
    assert seen[original].body == "hello bob"
    assert reply.event_id in seen and reaction.event_id in seen

    # The edit is served redacted now: its content is gone.
    messages = await bob.room_messages(room_id, start=bob.next_batch, limit=20)
    assert isinstance(messages, nio.RoomMessagesResponse), messages
    by_id = {e.event_id: e for e in messages.chunk}
    assert by_id[edit.event_id].source["content"] == {}
    assert by_id[edit.event_id].source["unsigned"]["redacted_because"]["event_id"] == redaction.event_id


async def test_group_and_announcement_room(server: LaunchedServer) -> None:
    admin = await _user(server, "teacher")
    parents = [await _user(server, "parent") for _ in range(3)]
    try:
        group = await admin.room_create(name="Class 3B", preset=nio.RoomPreset.public_chat)
        assert isinstance(group, nio.RoomCreateResponse), group
        news = await admin.room_create(
            name="Announcements",
            preset=nio.RoomPreset.public_chat,
            power_level_override={"events_default": 50},
        )
        assert isinstance(news, nio.RoomCreateResponse), news
        for parent in parents:
            assert isinstance(await parent.join(group.room_id), nio.JoinResponse)
            assert isinstance(await parent.join(news.room_id), nio.JoinResponse)

        refused = await parents[0].room_send(
            news.room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"}
        )
        assert isinstance(refused, nio.RoomSendError) and refused.status_code == "M_FORBIDDEN"
        posted = await admin.room_send(
            news.room_id, "m.room.message", {"msgtype": "m.text", "body": "No school"}
        )
        assert isinstance(posted, nio.RoomSendResponse)
        chat = await parents[1].room_send(
            group.room_id, "m.room.message", {"msgtype": "m.text", "body": "hello"}
        )
        assert isinstance(chat, nio.RoomSendResponse)

        await _sync_until(
            parents[2],
            lambda r: (
                any(e.event_id == posted.event_id for e in _timeline(r, news.room_id))
                or posted.event_id
                in {e.event_id for room in r.rooms.join.values() for e in room.timeline.events}
            ),
        )
    finally:
        for client in [admin, *parents]:
            await client.close()


async def test_pagination_through_1000_messages(pair: tuple[nio.AsyncClient, nio.AsyncClient]) -> None:
    alice, bob = pair
    created = await alice.room_create(preset=nio.RoomPreset.public_chat)
    assert isinstance(created, nio.RoomCreateResponse)
    room_id = created.room_id
    assert isinstance(await bob.join(room_id), nio.JoinResponse)
    sent = []
    for i in range(1000):
        response = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": f"n{i}"})
        assert isinstance(response, nio.RoomSendResponse), response
        sent.append(response.event_id)

    sync = await bob.sync(timeout=0, since=bob.next_batch)
    assert isinstance(sync, nio.SyncResponse)
    token = bob.next_batch
    received: list[str] = []
    for _ in range(200):
        page = await bob.room_messages(room_id, start=token, limit=100)
        assert isinstance(page, nio.RoomMessagesResponse), page
        received.extend(e.event_id for e in page.chunk if isinstance(e, nio.RoomMessageText))
        if not page.end or not page.chunk:
            break
        token = page.end
    received.reverse()
    assert received == sent
