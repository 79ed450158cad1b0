"""Unread notification counts: push rules evaluated at persistence, reset by read receipts."""

from __future__ import annotations

from typing import Any

from .helpers import auth, register


async def _sync(client: Any, token: str, since: str | None = None, flt: str | None = None) -> dict[str, Any]:
    params = {}
    if since:
        params["since"] = since
    if flt:
        params["filter"] = flt
    resp = await client.get("/_matrix/client/v3/sync", params=params, headers=auth(token))
    body = await resp.json()
    assert resp.status == 200, body
    return dict(body)


async def test_counts_go_up_and_back_to_zero(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await register(client)
    bob = await register(client, "bob")
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(alice["access_token"])
    )
    room_id = (await resp.json())["room_id"]
    await client.post(f"/_matrix/client/v3/join/{room_id}", headers=auth(bob["access_token"]))
    last = None
    for i, body in enumerate(["hello", "how are you", "bob, are you there?"]):
        resp = await client.put(
            f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{i}",
            json={"msgtype": "m.text", "body": body},
            headers=auth(alice["access_token"]),
        )
        last = (await resp.json())["event_id"]

    sync = await _sync(client, bob["access_token"])
    counts = sync["rooms"]["join"][room_id]["unread_notifications"]
    assert counts == {"notification_count": 3, "highlight_count": 1}  # "bob" mentions his name
    alice_counts = (await _sync(client, alice["access_token"]))["rooms"]["join"][room_id]
    assert alice_counts["unread_notifications"]["notification_count"] == 0  # own messages

    resp = await client.post(
        f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{last}",
        json={},
        headers=auth(bob["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    after = await _sync(client, bob["access_token"], since=sync["next_batch"])
    assert after["rooms"]["join"][room_id]["unread_notifications"] == {
        "notification_count": 0,
        "highlight_count": 0,
    }

    resp = await client.get(
        "/_matrix/client/v3/notifications?only=highlight", headers=auth(bob["access_token"])
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert [n["event"]["content"]["body"] for n in body["notifications"]] == ["bob, are you there?"]
    assert body["notifications"][0]["read"] is True
