"""matrix-nio: typing, read receipts and unread counts going up and back to 0 after reading."""

from __future__ import annotations

import secrets

import nio

from synapse_compat_tests.launcher import LaunchedServer


async def _user(server: LaunchedServer, name: str) -> nio.AsyncClient:
    localpart = f"{name}{secrets.token_hex(3)}"
    client = nio.AsyncClient(server.base_url, localpart)
    response = await client.register(localpart, "pw-" + localpart)
    assert isinstance(response, nio.RegisterResponse), response
    await client.sync(timeout=0)
    return client


async def _sync_until(client: nio.AsyncClient, predicate, attempts: int = 20) -> nio.SyncResponse:
    for _ in range(attempts):
        response = await client.sync(timeout=5000, since=client.next_batch)
        assert isinstance(response, nio.SyncResponse), response
        if predicate(response):
            return response
    raise AssertionError("condition not reached through sync")


def _ephemeral(response: nio.SyncResponse, room_id: str) -> list[object]:
    room = response.rooms.join.get(room_id)
    return list(room.ephemeral) if room else []


async def test_typing_receipts_and_unread_counts(server: LaunchedServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    try:
        created = await alice.room_create(name="Homework", preset=nio.RoomPreset.public_chat)
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        assert isinstance(await bob.join(room_id), nio.JoinResponse)
        await bob.sync(timeout=0, since=bob.next_batch)
        bob_name = bob.user_id.split(":")[0][1:]

        sent = []
        for body in ["page 12 please", "and exercise 4", f"{bob_name}, did you finish?"]:
            response = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
            assert isinstance(response, nio.RoomSendResponse), response
            sent.append(response.event_id)

        def counted(response: nio.SyncResponse) -> bool:
            room = response.rooms.join.get(room_id)
            return room is not None and room.unread_notifications.notification_count == 3

        response = await _sync_until(bob, counted)
        counts = response.rooms.join[room_id].unread_notifications
        assert (counts.notification_count, counts.highlight_count) == (3, 1)

        typing = await alice.room_typing(room_id, True, timeout=20000)
        assert isinstance(typing, nio.RoomTypingResponse), typing
        await _sync_until(
            bob,
            lambda r: any(
                isinstance(e, nio.TypingNoticeEvent) and alice.user_id in e.users
                for e in _ephemeral(r, room_id)
            ),
        )

        receipt = await bob.update_receipt_marker(room_id, sent[-1])
        assert isinstance(receipt, nio.UpdateReceiptMarkerResponse), receipt
        await _sync_until(
            alice,
            lambda r: any(
                isinstance(e, nio.ReceiptEvent)
                and any(rc.user_id == bob.user_id and rc.event_id == sent[-1] for rc in e.receipts)
                for e in _ephemeral(r, room_id)
            ),
        )

        def read(response: nio.SyncResponse) -> bool:
            room = response.rooms.join.get(room_id)
            return room is not None and room.unread_notifications.notification_count == 0

        response = await _sync_until(bob, read)
        counts = response.rooms.join[room_id].unread_notifications
        assert (counts.notification_count, counts.highlight_count) == (0, 0)
    finally:
        await alice.close()
        await bob.close()
