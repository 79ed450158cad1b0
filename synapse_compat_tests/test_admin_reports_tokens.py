"""Synapse's Event Reports, Registration Tokens and Server Version admin APIs (shapes tools parse:
integer `next_token` for event reports, token objects with uses_allowed/pending/completed/expiry_time)."""

from __future__ import annotations

import secrets

from .client import q
from .harness import Homeserver, User, create_room, join_room, send_text
from .spec_schema import assert_error

V1 = "/_synapse/admin/v1"


def _report(reporter: User, room_id: str, event_id: str, reason: str) -> None:
    resp = reporter.client.post(
        f"/_matrix/client/v3/rooms/{q(room_id)}/report/{q(event_id)}", {"reason": reason, "score": -50}
    )
    assert resp.status == 200, resp.describe()


def test_server_version_needs_no_token(hs: Homeserver) -> None:
    resp = hs.client().get(f"{V1}/server_version")
    assert resp.status == 200, resp.describe()
    assert isinstance(resp.body["server_version"], str) and resp.body["server_version"]


def test_admin_only(hs: Homeserver, user: User) -> None:
    for method, path in [
        ("GET", f"{V1}/event_reports"),
        ("GET", f"{V1}/event_reports/1"),
        ("DELETE", f"{V1}/event_reports/1"),
        ("GET", f"{V1}/registration_tokens"),
        ("POST", f"{V1}/registration_tokens/new"),
        ("GET", f"{V1}/registration_tokens/abc"),
        ("PUT", f"{V1}/registration_tokens/abc"),
        ("DELETE", f"{V1}/registration_tokens/abc"),
    ]:
        kw = {"json_body": {}} if method in ("POST", "PUT") else {}
        assert_error(user.client.request(method, path, **kw), 403, "M_FORBIDDEN")
        assert_error(hs.client().request(method, path, **kw), 401, "M_MISSING_TOKEN")


def test_event_reports(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(other_user, preset="public_chat", name="Reported room")
    join_room(user, room_id)
    first = send_text(other_user, room_id, "offensive one")
    second = send_text(other_user, room_id, "offensive two")
    _report(user, room_id, first, "first")
    _report(user, room_id, second, "second")

    resp = admin.client.get(f"{V1}/event_reports", params={"room_id": room_id, "limit": 1})
    assert resp.status == 200, resp.describe()
    assert resp.body["total"] == 2 and resp.body["next_token"] == 1  # an integer
    newest = resp.body["event_reports"][0]
    assert newest["event_id"] == second  # newest first by default
    assert newest["user_id"] == user.user_id and newest["sender"] == other_user.user_id
    assert newest["room_id"] == room_id and newest["reason"] == "second" and newest["score"] == -50
    assert newest["name"] == "Reported room"
    for key in ("id", "received_ts", "canonical_alias"):
        assert key in newest, newest
    rest = admin.client.get(f"{V1}/event_reports", params={"room_id": room_id, "from": 1}).body
    assert [r["event_id"] for r in rest["event_reports"]] == [first] and "next_token" not in rest
    forwards = admin.client.get(f"{V1}/event_reports", params={"room_id": room_id, "dir": "f"}).body
    assert [r["event_id"] for r in forwards["event_reports"]] == [first, second]
    by_user = admin.client.get(f"{V1}/event_reports", params={"user_id": user.user_id}).body
    assert {r["event_id"] for r in by_user["event_reports"]} >= {first, second}

    report_id = newest["id"]
    detail = admin.client.get(f"{V1}/event_reports/{report_id}")
    assert detail.status == 200, detail.describe()
    assert detail.body["event_json"]["type"] == "m.room.message"
    assert detail.body["event_json"]["content"]["body"] == "offensive two"
    assert admin.client.delete(f"{V1}/event_reports/{report_id}").status == 200
    assert_error(admin.client.get(f"{V1}/event_reports/{report_id}"), 404, "M_NOT_FOUND")
    assert_error(admin.client.delete(f"{V1}/event_reports/{report_id}"), 404, "M_NOT_FOUND")
    assert_error(admin.client.get(f"{V1}/event_reports/abc"), 400, "M_INVALID_PARAM")
    assert_error(admin.client.get(f"{V1}/event_reports", params={"dir": "x"}), 400, "M_INVALID_PARAM")


def test_registration_tokens(hs: Homeserver) -> None:
    admin = hs.register(admin=True)
    name = "tok" + secrets.token_hex(4)
    resp = admin.client.post(f"{V1}/registration_tokens/new", {"token": name, "uses_allowed": 3})
    assert resp.status == 200, resp.describe()
    assert resp.body == {"token": name, "uses_allowed": 3, "pending": 0, "completed": 0, "expiry_time": None}
    assert_error(admin.client.post(f"{V1}/registration_tokens/new", {"token": name}), 400, "M_INVALID_PARAM")

    resp = admin.client.get(f"{V1}/registration_tokens/{name}")
    assert resp.status == 200 and resp.body["token"] == name, resp.describe()
    listed = admin.client.get(f"{V1}/registration_tokens").body["registration_tokens"]
    assert name in [t["token"] for t in listed]
    valid = admin.client.get(f"{V1}/registration_tokens", params={"valid": "true"}).body[
        "registration_tokens"
    ]
    assert name in [t["token"] for t in valid]

    resp = admin.client.put(f"{V1}/registration_tokens/{name}", {"uses_allowed": 0})
    assert resp.status == 200 and resp.body["uses_allowed"] == 0, resp.describe()
    invalid = admin.client.get(f"{V1}/registration_tokens", params={"valid": "false"}).body
    assert name in [t["token"] for t in invalid["registration_tokens"]]

    generated = admin.client.post(f"{V1}/registration_tokens/new", {"length": 10})
    assert generated.status == 200 and len(generated.body["token"]) == 10, generated.describe()
    assert_error(admin.client.post(f"{V1}/registration_tokens/new", {"length": 65}), 400, "M_INVALID_PARAM")
    assert_error(
        admin.client.post(f"{V1}/registration_tokens/new", {"uses_allowed": -1}), 400, "M_INVALID_PARAM"
    )

    assert admin.client.delete(f"{V1}/registration_tokens/{name}").status == 200
    assert_error(admin.client.get(f"{V1}/registration_tokens/{name}"), 404, "M_NOT_FOUND")
    assert_error(admin.client.delete(f"{V1}/registration_tokens/{name}"), 404, "M_NOT_FOUND")
    admin.client.delete(f"{V1}/registration_tokens/{generated.body['token']}")
