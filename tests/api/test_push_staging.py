"""Notification rows are staged per event and folded into event_push_actions in bulk (issue #20):
counts, GET /notifications, read receipts and push rules must answer exactly as if every row had
been written to event_push_actions directly, whichever table a row is in."""

from __future__ import annotations

from typing import Any

from ..conftest import services_of
from .helpers import auth, register


async def _sync_counts(client: Any, user: dict[str, Any], room_id: str) -> dict[str, int]:
    # Recount from the database, not from the in-memory cache the persister keeps current.
    services_of(client).notifications.forget(user["user_id"], room_id)
    resp = await client.get(
        "/_matrix/client/v3/sync", params={"timeout": "0"}, headers=auth(user["access_token"])
    )
    body = await resp.json()
    assert resp.status == 200, body
    return dict(body["rooms"]["join"][room_id]["unread_notifications"])


async def _room(client: Any, owner: dict[str, Any], *joiners: dict[str, Any]) -> str:
    resp = await client.post(
        "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth(owner["access_token"])
    )
    room_id = str((await resp.json())["room_id"])
    for user in joiners:
        resp = await client.post(f"/_matrix/client/v3/join/{room_id}", headers=auth(user["access_token"]))
        assert resp.status == 200, await resp.json()
    return room_id


async def _send(client: Any, user: dict[str, Any], room_id: str, txn: str, body: str) -> str:
    resp = await client.put(
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}",
        json={"msgtype": "m.text", "body": body},
        headers=auth(user["access_token"]),
    )
    data = await resp.json()
    assert resp.status == 200, data
    return str(data["event_id"])


async def _notifications(client: Any, user: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await client.get("/_matrix/client/v3/notifications", headers=auth(user["access_token"]))
    body = await resp.json()
    assert resp.status == 200, body
    return list(body["notifications"])


async def _rows(client: Any, table: str) -> int:
    return int(await services_of(client).db.fetchval(f"SELECT COUNT(*) FROM {table}"))


async def test_counts_notifications_and_receipts_across_folds(any_engine_client: Any) -> None:
    client = any_engine_client
    notifications = services_of(client).notifications
    notifications.FOLD_ROWS = 3  # every second message (two rows each) moves the staged rows
    alice = await register(client)
    bob = await register(client, "bob")
    carol = await register(client, "carol")
    room_id = await _room(client, alice, bob, carol)

    sent = [
        await _send(client, alice, room_id, f"t{i}", text)
        for i, text in enumerate(["hello", "bob, lunch?", "anyone?"])
    ]
    # Four rows folded (two messages), two still staged: the reads see both.
    assert await _rows(client, "event_push_actions") == 4
    assert await _rows(client, "event_push_actions_staging") == 2
    assert await _sync_counts(client, bob, room_id) == {"notification_count": 3, "highlight_count": 1}
    assert await _sync_counts(client, carol, room_id) == {"notification_count": 3, "highlight_count": 0}
    listed = await _notifications(client, bob)
    assert [n["event"]["event_id"] for n in listed] == sent[::-1]
    assert [n["read"] for n in listed] == [False, False, False]

    # A receipt on the last (staged) message marks rows in both tables read.
    resp = await client.post(
        f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{sent[2]}",
        json={},
        headers=auth(bob["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    assert await _sync_counts(client, bob, room_id) == {"notification_count": 0, "highlight_count": 0}
    assert [n["read"] for n in await _notifications(client, bob)] == [True, True, True]

    # The read flags move with the rows; carol's unread rows stay unread.
    sent.append(await _send(client, alice, room_id, "t3", "more"))
    assert await _rows(client, "event_push_actions_staging") == 0
    assert await _rows(client, "event_push_actions") == 8
    assert [n["read"] for n in await _notifications(client, bob)] == [False, True, True, True]
    assert await _sync_counts(client, bob, room_id) == {"notification_count": 1, "highlight_count": 0}
    assert await _sync_counts(client, carol, room_id) == {"notification_count": 4, "highlight_count": 0}

    # Sending reads the room up to one's own event: also across the tables.
    await _send(client, carol, room_id, "c0", "read it all")
    assert await _sync_counts(client, carol, room_id) == {"notification_count": 0, "highlight_count": 0}


async def test_mixed_rule_sets_in_one_room(any_engine_client: Any) -> None:
    """One event, members with different rule sets: defaults, a keyword rule, a display-name
    mention, a muted room, and the sender."""
    client = any_engine_client
    alice = await register(client)
    bob = await register(client, "bob")  # default rules
    carol = await register(client, "carol")  # a keyword rule
    dave = await register(client, "dave")  # mentioned by display name
    erin = await register(client, "erin")  # muted the room
    resp = await client.put(
        f"/_matrix/client/v3/profile/{dave['user_id']}/displayname",
        json={"displayname": "Dave Smith"},
        headers=auth(dave["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    room_id = await _room(client, alice, bob, carol, dave, erin)
    resp = await client.put(
        "/_matrix/client/v3/pushrules/global/content/lunch",
        json={"pattern": "lunch", "actions": ["notify", {"set_tweak": "highlight"}]},
        headers=auth(carol["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    resp = await client.put(
        f"/_matrix/client/v3/pushrules/global/room/{room_id}",
        json={"actions": []},
        headers=auth(erin["access_token"]),
    )
    assert resp.status == 200, await resp.json()

    event_id = await _send(client, alice, room_id, "m0", "Dave Smith, lunch at noon?")
    expected = {
        "bob": {"notification_count": 1, "highlight_count": 0},
        "carol": {"notification_count": 1, "highlight_count": 1},
        "dave": {"notification_count": 1, "highlight_count": 1},
        "erin": {"notification_count": 0, "highlight_count": 0},
        "alice": {"notification_count": 0, "highlight_count": 0},
    }
    users = {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "erin": erin}
    for name, user in users.items():
        assert await _sync_counts(client, user, room_id) == expected[name], name
    carol_actions = (await _notifications(client, carol))[0]["actions"]
    assert {"set_tweak": "highlight"} in carol_actions
    dave_notes = await _notifications(client, dave)
    assert [n["event"]["event_id"] for n in dave_notes] == [event_id]
    assert await _notifications(client, erin) == []

    # The same rules once the rows are folded.
    async with services_of(client).db.transaction() as conn:
        await services_of(client).notifications.store.fold_txn(conn)
    assert await _rows(client, "event_push_actions_staging") == 0
    for name, user in users.items():
        assert await _sync_counts(client, user, room_id) == expected[name], name
