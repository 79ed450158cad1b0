"""Synapse's server notices admin API (docs/admin_api/server_notices.md, docs/server_notices.md):
POST /_synapse/admin/v1/send_server_notice and PUT .../{txnId}. The server under test must have
`server_notices` configured with `system_mxid_localpart: notices` and `room_name: Server Notices`
(the launcher does so; pass the same block to a reference Synapse).
"""

from __future__ import annotations

from typing import Any

from .admin_support import ADMIN_V1, assert_admin_only
from .client import q
from .harness import V3, Homeserver, User, join_room, sync_once
from .spec_schema import assert_error

NOTICE = f"{ADMIN_V1}/send_server_notice"


def _notice_room(user: User) -> str:
    """The room the user was invited to by the notices user."""
    body = sync_once(user)
    invites: dict[str, Any] = body.get("rooms", {}).get("invite", {})
    for room_id, room in invites.items():
        events = room["invite_state"]["events"]
        names = [e["content"].get("name") for e in events if e["type"] == "m.room.name"]
        if names == ["Server Notices"]:
            return room_id
    raise AssertionError(f"no server notices invite in {invites}")


def _timeline(user: User, room_id: str) -> list[dict[str, Any]]:
    # Raw /messages: Synapse's notices user joins with `avatar_url: null` when no avatar is
    # configured, which the spec's m.room.member schema rejects (a Synapse deviation).
    resp = user.client.get(f"{V3}/rooms/{q(room_id)}/messages", params={"dir": "b"})
    assert resp.status == 200, resp.describe()
    chunk: list[dict[str, Any]] = resp.body["chunk"]
    return chunk


def test_non_admins_are_forbidden(hs: Homeserver, user: User, other_user: User) -> None:
    body = {"user_id": other_user.user_id, "content": {"msgtype": "m.text", "body": "hi"}}
    assert_admin_only(
        hs,
        user,
        [("POST", NOTICE, body), ("PUT", f"{NOTICE}/txn1", body), ("POST", NOTICE, None)],
    )


def test_send_server_notice(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    content = {"msgtype": "m.text", "body": "Maintenance tonight at 22:00"}
    resp = admin.client.post(NOTICE, {"user_id": user.user_id, "content": content})
    assert resp.status == 200, resp.describe()
    event_id = resp.body["event_id"]
    assert isinstance(event_id, str) and event_id.startswith("$"), resp.describe()

    room_id = _notice_room(user)
    tags = user.client.get(f"{V3}/user/{q(user.user_id)}/rooms/{q(room_id)}/tags")
    assert tags.status == 200 and "m.server_notice" in tags.body["tags"], tags.describe()
    join_room(user, room_id)
    chunk = _timeline(user, room_id)
    notice = next(e for e in chunk if e["event_id"] == event_id)
    assert notice["content"] == content and notice["sender"] == f"@notices:{user.server_name}", notice

    # The user reads the room but cannot write in it.
    text = {"msgtype": "m.text", "body": "x"}
    reply = user.client.put(f"{V3}/rooms/{q(room_id)}/send/m.room.message/t1", text)
    assert_error(reply, 403, "M_FORBIDDEN")

    # The next notice goes to the same room.
    again = {"msgtype": "m.text", "body": "again"}
    resp = admin.client.post(NOTICE, {"user_id": user.user_id, "content": again})
    assert resp.status == 200, resp.describe()
    chunk = _timeline(user, room_id)
    assert resp.body["event_id"] in [e["event_id"] for e in chunk], chunk


def test_send_server_notice_with_txn_id_is_idempotent(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    body = {"user_id": user.user_id, "content": {"msgtype": "m.text", "body": "once"}}
    first = admin.client.put(f"{NOTICE}/{user.localpart}", body)
    second = admin.client.put(f"{NOTICE}/{user.localpart}", body)
    assert first.status == 200 and second.status == 200, (first.describe(), second.describe())
    assert first.body["event_id"] == second.body["event_id"], (first.describe(), second.describe())


def test_send_server_notice_bad_requests(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    content = {"msgtype": "m.text", "body": "x"}
    assert_error(admin.client.post(NOTICE, {"content": content}), 400, "M_MISSING_PARAM")
    assert_error(admin.client.post(NOTICE, {"user_id": user.user_id}), 400, "M_MISSING_PARAM")
    remote = {"user_id": "@someone:remote.example.org", "content": content}
    assert_error(admin.client.post(NOTICE, remote), 400)
    nobody = {"user_id": f"@nobody-{user.localpart}:{user.server_name}", "content": content}
    assert_error(admin.client.post(NOTICE, nobody), 404, "M_NOT_FOUND")
