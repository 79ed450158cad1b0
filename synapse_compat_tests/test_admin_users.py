"""Synapse's User Admin API (docs/admin_api/user_admin_api.md): the shapes synapse-admin and
scripts parse. Written to pass against Synapse 1.163 and our server alike."""

from __future__ import annotations

import secrets
from typing import Any

from .client import q
from .harness import Homeserver, User, create_room, get_messages, join_room, send_text
from .spec_schema import assert_error

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


def _prefix() -> str:
    return "adm" + secrets.token_hex(4)


def _users(admin: User, **params: Any) -> dict[str, Any]:
    resp = admin.client.get(f"{V2}/users", params=params)
    assert resp.status == 200, resp.describe()
    assert isinstance(resp.body["users"], list) and isinstance(resp.body["total"], int), resp.describe()
    return resp.body


def test_admin_only(hs: Homeserver, user: User, other_user: User) -> None:
    target = q(other_user.user_id)
    for method, path in [
        ("GET", f"{V2}/users"),
        ("GET", f"{V2}/users/{target}"),
        ("PUT", f"{V2}/users/{target}"),
        ("POST", f"{V1}/deactivate/{target}"),
        ("POST", f"{V1}/reset_password/{target}"),
        ("GET", f"{V1}/whois/{target}"),
        ("GET", f"{V2}/users/{target}/devices"),
        ("POST", f"{V1}/users/{target}/login"),
        ("GET", f"{V1}/users/{target}/joined_rooms"),
        ("GET", f"{V1}/users/{target}/memberships"),
        ("GET", f"{V1}/users/{target}/sent_invite_count"),
        ("GET", f"{V1}/users/{target}/cumulative_joined_room_count"),
        ("GET", "/_synapse/admin/v3/users"),
        ("GET", f"{V1}/users/{target}/media"),
        ("POST", f"{V1}/users/{target}/shadow_ban"),
        ("GET", f"{V1}/users/{target}/override_ratelimit"),
        ("PUT", f"{V1}/suspend/{target}"),
        ("GET", f"{V1}/users/{target}/pushers"),
        ("GET", f"{V1}/users/{target}/accountdata"),
        ("GET", f"{V1}/username_available"),
    ]:
        body = {} if method in ("PUT", "POST") else None
        # Forbidden comes before any check of the (here missing) parameters.
        kw = {"json_body": body} if body is not None else {}
        assert_error(user.client.request(method, path, **kw), 403, "M_FORBIDDEN")
        assert_error(hs.client().request(method, path, **kw), 401, "M_MISSING_TOKEN")


def test_list_users_paging_and_filters(hs: Homeserver) -> None:
    admin = hs.register(admin=True)
    prefix = _prefix()
    names = [f"{prefix}-{i}" for i in range(3)]
    users = [hs.register(localpart=n, displayname=f"Person {n}") for n in names]
    page = _users(admin, user_id=prefix, limit=2)
    assert page["total"] == 3
    assert [u["name"] for u in page["users"]] == [u.user_id for u in users[:2]]
    assert page["next_token"] == "2"  # a string, as Synapse
    entry = page["users"][0]
    for key in (
        "name",
        "is_guest",
        "admin",
        "deactivated",
        "shadow_banned",
        "displayname",
        "avatar_url",
        "creation_ts",
        "locked",
        "user_type",
        "erased",
    ):
        assert key in entry, entry
    assert entry["creation_ts"] > 10**12  # milliseconds in the list
    assert entry["displayname"] == f"Person {names[0]}"
    rest = _users(admin, user_id=prefix, limit=2, **{"from": 2})
    assert [u["name"] for u in rest["users"]] == [users[2].user_id]
    assert "next_token" not in rest
    backwards = _users(admin, user_id=prefix, dir="b")
    assert [u["name"] for u in backwards["users"]] == [u.user_id for u in reversed(users)]
    # `name` matches localparts and display names.
    assert _users(admin, name=f"person {names[1]}")["total"] == 1
    assert _users(admin, name=prefix.upper())["total"] == 3  # localparts, case-insensitively
    # deactivated users are hidden unless asked for; admins filter.
    resp = admin.client.post(f"{V1}/deactivate/{q(users[0].user_id)}", {})
    assert resp.status == 200, resp.describe()
    assert _users(admin, user_id=prefix)["total"] == 2
    assert _users(admin, user_id=prefix, deactivated="true")["total"] == 3
    assert _users(admin, user_id=prefix, admins="true")["total"] == 0
    assert _users(admin, user_id=admin.localpart, admins="true")["total"] == 1
    assert_error(admin.client.get(f"{V2}/users", params={"order_by": "nonsense"}), 400, "M_INVALID_PARAM")
    assert_error(admin.client.get(f"{V2}/users", params={"from": "-1"}), 400, "M_INVALID_PARAM")
    assert_error(admin.client.get(f"{V2}/users", params={"guests": "maybe"}), 400, "M_INVALID_PARAM")


def test_query_user(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    resp = admin.client.get(f"{V2}/users/{q(user.user_id)}")
    assert resp.status == 200, resp.describe()
    body = resp.body
    assert body["name"] == user.user_id
    assert body["admin"] is False and body["deactivated"] is False and body["erased"] is False
    assert body["threepids"] == [] and body["external_ids"] == []
    assert 10**9 < body["creation_ts"] < 10**11  # seconds here (milliseconds in the list)
    for key in (
        "displayname",
        "avatar_url",
        "is_guest",
        "shadow_banned",
        "appservice_id",
        "user_type",
        "locked",
    ):
        assert key in body, body
    nobody = f"@nobody-{secrets.token_hex(4)}:{user.server_name}"
    assert_error(admin.client.get(f"{V2}/users/{q(nobody)}"), 404, "M_NOT_FOUND")
    assert_error(admin.client.get(f"{V2}/users/{q('@x:remote.example.org')}"), 400)


def test_create_and_modify_user(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    localpart = _prefix()
    user_id = f"@{localpart}:{user.server_name}"
    resp = admin.client.put(
        f"{V2}/users/{q(user_id)}",
        {
            "password": "first-pass-123",
            "displayname": "Created",
            "threepids": [{"medium": "email", "address": f"{localpart}@example.org"}],
            "external_ids": [{"auth_provider": "moodle", "external_id": localpart}],
        },
    )
    assert resp.status == 201, resp.describe()
    assert resp.body["name"] == user_id and resp.body["displayname"] == "Created"
    assert [t["address"] for t in resp.body["threepids"]] == [f"{localpart}@example.org"]
    assert resp.body["external_ids"] == [{"auth_provider": "moodle", "external_id": localpart}]
    assert hs.login(user_id, "first-pass-123").status == 200

    resp = admin.client.put(f"{V2}/users/{q(user_id)}", {"displayname": "Renamed", "admin": True})
    assert resp.status == 200, resp.describe()
    assert resp.body["displayname"] == "Renamed" and resp.body["admin"] is True
    profile = user.client.get(f"/_matrix/client/v3/profile/{q(user_id)}/displayname")
    assert profile.status == 200 and profile.body["displayname"] == "Renamed", profile.describe()

    resp = admin.client.put(
        f"{V2}/users/{q(user_id)}", {"password": "second-pass-456", "logout_devices": True}
    )
    assert resp.status == 200, resp.describe()
    assert_error(hs.login(user_id, "first-pass-123"), 403, "M_FORBIDDEN")
    assert hs.login(user_id, "second-pass-456").status == 200

    assert_error(admin.client.put(f"{V2}/users/{q(user_id)}", {"admin": "yes"}), 400, "M_BAD_JSON")
    assert_error(admin.client.put(f"{V2}/users/{q(user_id)}", {"user_type": "wizard"}), 400)


def test_deactivate_with_erase(hs: Homeserver) -> None:
    admin = hs.register(admin=True)
    victim = hs.register(displayname="To Erase")
    resp = victim.client.put(
        f"/_matrix/client/v3/profile/{q(victim.user_id)}/avatar_url", {"avatar_url": "mxc://example.org/abc"}
    )
    assert resp.status == 200, resp.describe()
    resp = admin.client.post(f"{V1}/deactivate/{q(victim.user_id)}", {"erase": True})
    assert resp.status == 200, resp.describe()
    assert resp.body == {"id_server_unbind_result": "success"}
    info = admin.client.get(f"{V2}/users/{q(victim.user_id)}").body
    assert info["deactivated"] is True and info["erased"] is True
    assert info["displayname"] is None and info["avatar_url"] is None
    # The password is wiped: logging in fails as for a wrong password; old tokens are dead.
    assert_error(hs.login(victim.user_id, victim.password), 403, "M_FORBIDDEN")
    assert victim.client.get("/_matrix/client/v3/account/whoami").status == 401


def test_reset_password(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    resp = admin.client.post(f"{V1}/reset_password/{q(user.user_id)}", {"new_password": "brand-new-pw-1"})
    assert resp.status == 200 and resp.body == {}, resp.describe()
    assert user.client.get("/_matrix/client/v3/account/whoami").status == 401  # logged out
    assert hs.login(user.user_id, "brand-new-pw-1").status == 200
    assert_error(admin.client.post(f"{V1}/reset_password/{q(user.user_id)}", {}), 400, "M_MISSING_PARAM")


def test_whois(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    agent = f"compat-whois/{secrets.token_hex(3)}"
    seen = user.client.get("/_matrix/client/v3/account/whoami", headers={"User-Agent": agent})
    assert seen.status == 200, seen.describe()
    resp = admin.client.get(f"{V1}/whois/{q(user.user_id)}")
    assert resp.status == 200, resp.describe()
    assert resp.body["user_id"] == user.user_id
    # Synapse lists every connection under one device named "".
    assert list(resp.body["devices"]) == [""]
    connections = resp.body["devices"][""]["sessions"][0]["connections"]
    mine = [c for c in connections if c["user_agent"] == agent]
    assert len(mine) == 1, connections
    assert mine[0]["ip"] and isinstance(mine[0]["last_seen"], int)
    assert_error(admin.client.get(f"{V1}/whois/{q('@x:remote.example.org')}"), 400)


def test_devices(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    base = f"{V2}/users/{q(user.user_id)}/devices"
    resp = admin.client.get(base)
    assert resp.status == 200, resp.describe()
    assert resp.body["total"] == 1
    device = resp.body["devices"][0]
    assert device["device_id"] == user.device_id and device["user_id"] == user.user_id

    resp = admin.client.post(base, {"device_id": "ADMINMADE"})
    assert resp.status == 201, resp.describe()
    resp = admin.client.put(f"{base}/ADMINMADE", {"display_name": "from the admin"})
    assert resp.status == 200, resp.describe()
    resp = admin.client.get(f"{base}/ADMINMADE")
    assert resp.status == 200 and resp.body["display_name"] == "from the admin", resp.describe()
    own = user.client.get("/_matrix/client/v3/devices").body["devices"]
    assert {d["device_id"] for d in own} == {user.device_id, "ADMINMADE"}

    resp = admin.client.delete(f"{base}/ADMINMADE")
    assert resp.status == 200, resp.describe()
    assert_error(admin.client.get(f"{base}/ADMINMADE"), 404, "M_NOT_FOUND")
    resp = admin.client.post(f"{V2}/users/{q(user.user_id)}/delete_devices", {"devices": [user.device_id]})
    assert resp.status == 200, resp.describe()
    assert admin.client.get(base).body["total"] == 0
    assert user.client.get("/_matrix/client/v3/account/whoami").status == 401


def test_joined_rooms(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user)
    resp = admin.client.get(f"{V1}/users/{q(user.user_id)}/joined_rooms")
    assert resp.status == 200, resp.describe()
    assert room_id in resp.body["joined_rooms"] and resp.body["total"] == len(resp.body["joined_rooms"])


def test_login_as_user(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    resp = admin.client.post(f"{V1}/users/{q(user.user_id)}/login", {})
    assert resp.status == 200, resp.describe()
    puppet = hs.client(resp.body["access_token"])
    whoami = puppet.get("/_matrix/client/v3/account/whoami")
    assert whoami.status == 200 and whoami.body["user_id"] == user.user_id, whoami.describe()
    # No new device shows up for the user.
    devices = user.client.get("/_matrix/client/v3/devices").body["devices"]
    assert [d["device_id"] for d in devices] == [user.device_id]
    # The token ends with /logout like any other.
    assert puppet.post("/_matrix/client/v3/logout", {}).status == 200
    assert puppet.get("/_matrix/client/v3/account/whoami").status == 401
    assert_error(admin.client.post(f"{V1}/users/{q(admin.user_id)}/login", {}), 400)


def test_user_media(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    for i in range(3):
        resp = user.client.post(
            "/_matrix/media/v3/upload",
            data=f"file {i}".encode(),
            headers={"Content-Type": "text/plain"},
            params={"filename": f"f{i}.txt"},
        )
        assert resp.status == 200, resp.describe()
    base = f"{V1}/users/{q(user.user_id)}/media"
    resp = admin.client.get(base, params={"limit": 2})
    assert resp.status == 200, resp.describe()
    assert resp.body["total"] == 3 and len(resp.body["media"]) == 2
    assert resp.body["next_token"] == 2  # an integer here, unlike the users list
    item = resp.body["media"][0]
    for key in (
        "media_id",
        "media_type",
        "media_length",
        "upload_name",
        "created_ts",
        "last_access_ts",
        "quarantined_by",
        "safe_from_quarantine",
    ):
        assert key in item, item
    assert item["upload_name"] == "f2.txt"  # newest first by default
    resp = admin.client.delete(base)
    assert resp.status == 200, resp.describe()
    assert resp.body["total"] == 3 and len(resp.body["deleted_media"]) == 3
    assert admin.client.get(base).body["total"] == 0


def test_shadow_ban(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(other_user, preset="public_chat")
    join_room(user, room_id)
    assert admin.client.post(f"{V1}/users/{q(user.user_id)}/shadow_ban", {}).status == 200
    hidden = send_text(user, room_id, "nobody sees this")  # answered as if it worked
    assert hidden.startswith("$")
    assert admin.client.delete(f"{V1}/users/{q(user.user_id)}/shadow_ban").status == 200
    seen = send_text(user, room_id, "visible again")
    bodies = [e["event_id"] for e in get_messages(other_user, room_id, dir="b", limit=20)["chunk"]]
    assert seen in bodies and hidden not in bodies


def test_override_ratelimit(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    path = f"{V1}/users/{q(user.user_id)}/override_ratelimit"
    resp = admin.client.get(path)
    assert resp.status == 200 and resp.body == {}, resp.describe()
    resp = admin.client.post(path, {"messages_per_second": 0, "burst_count": 0})
    assert resp.status == 200 and resp.body == {"messages_per_second": 0, "burst_count": 0}, resp.describe()
    assert admin.client.get(path).body == {"messages_per_second": 0, "burst_count": 0}
    assert_error(admin.client.post(path, {"messages_per_second": -1}), 400, "M_INVALID_PARAM")
    resp = admin.client.delete(path)
    assert resp.status == 200 and resp.body == {}, resp.describe()
    assert admin.client.get(path).body == {}


def test_suspend(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(other_user, preset="public_chat")
    join_room(user, room_id)
    own = send_text(user, room_id, "before")
    resp = admin.client.put(f"{V1}/suspend/{q(user.user_id)}", {"suspend": True})
    assert resp.status == 200, resp.describe()
    assert resp.body == {f"user_{user.user_id}_suspended": True}
    txn = secrets.token_hex(4)
    sent = user.client.put(
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": "x"}
    )
    assert_error(sent, 403, "M_USER_SUSPENDED")
    # Reading still works, and so does redacting one's own message.
    assert get_messages(user, room_id, dir="b", limit=5)["chunk"]
    redact = user.client.put(f"/_matrix/client/v3/rooms/{q(room_id)}/redact/{q(own)}/{txn}", {})
    assert redact.status == 200, redact.describe()
    resp = admin.client.put(f"{V1}/suspend/{q(user.user_id)}", {"suspend": False})
    assert resp.status == 200 and resp.body == {f"user_{user.user_id}_suspended": False}, resp.describe()
    send_text(user, room_id, "after")


def test_pushers_and_account_data(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    resp = user.client.post(
        "/_matrix/client/v3/pushers/set",
        {
            "kind": "http",
            "app_id": "org.example.app",
            "pushkey": "key-1",
            "app_display_name": "App",
            "device_display_name": "Phone",
            "lang": "en",
            "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
        },
    )
    assert resp.status == 200, resp.describe()
    resp = admin.client.get(f"{V1}/users/{q(user.user_id)}/pushers")
    assert resp.status == 200, resp.describe()
    assert resp.body["total"] == 1 and resp.body["pushers"][0]["pushkey"] == "key-1"

    resp = user.client.put(f"/_matrix/client/v3/user/{q(user.user_id)}/account_data/org.example.x", {"a": 1})
    assert resp.status == 200, resp.describe()
    resp = admin.client.get(f"{V1}/users/{q(user.user_id)}/accountdata")
    assert resp.status == 200, resp.describe()
    assert resp.body["account_data"]["global"]["org.example.x"] == {"a": 1}
    assert isinstance(resp.body["account_data"]["rooms"], dict)


def test_username_available(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    resp = admin.client.get(f"{V1}/username_available", params={"username": _prefix()})
    assert resp.status == 200 and resp.body == {"available": True}, resp.describe()
    assert_error(
        admin.client.get(f"{V1}/username_available", params={"username": user.localpart}),
        400,
        "M_USER_IN_USE",
    )


def test_list_users_v3_deactivated_filter(hs: Homeserver) -> None:
    """v3 (what synapse-admin lists with): `deactivated` filters instead of including."""
    admin = hs.register(admin=True)
    prefix = _prefix()
    active = hs.register(localpart=f"{prefix}-a")
    gone = hs.register(localpart=f"{prefix}-d")
    resp = admin.client.post(f"{V1}/deactivate/{q(gone.user_id)}", {"erase": False})
    assert resp.status == 200, resp.describe()

    def names(**params: Any) -> list[str]:
        resp = admin.client.get("/_synapse/admin/v3/users", params={"user_id": prefix, **params})
        assert resp.status == 200, resp.describe()
        assert resp.body["total"] == len(resp.body["users"]), resp.describe()
        return sorted(u["name"] for u in resp.body["users"])

    assert names() == sorted([active.user_id, gone.user_id])
    assert names(deactivated="true") == [gone.user_id]
    assert names(deactivated="false") == [active.user_id]


def test_user_memberships(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    joined = create_room(other_user, preset="public_chat")
    join_room(user, joined)
    left = create_room(other_user, preset="public_chat")
    join_room(user, left)
    assert user.client.post(f"/_matrix/client/v3/rooms/{q(left)}/leave", {}).status == 200
    resp = admin.client.get(f"{V1}/users/{q(user.user_id)}/memberships")
    assert resp.status == 200, resp.describe()
    assert resp.body["memberships"] == {joined: "join", left: "leave"}, resp.describe()
    # Invites sent by other_user: none yet.
    resp = admin.client.get(f"{V1}/users/{q(other_user.user_id)}/sent_invite_count", params={"from_ts": 0})
    assert resp.status == 200 and resp.body == {"invite_count": 0}, resp.describe()
    resp = admin.client.get(
        f"{V1}/users/{q(user.user_id)}/cumulative_joined_room_count", params={"from_ts": 0}
    )
    assert resp.status == 200 and resp.body == {"cumulative_joined_room_count": 2}, resp.describe()
