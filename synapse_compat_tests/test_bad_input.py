"""Bad input that Synapse and we answer alike: passwords longer than bcrypt's 72 bytes, event content
that is not canonical JSON (floats, integers outside ±(2^53−1)), wrong types in user-interactive
auth, and query integers that are not integers."""

from __future__ import annotations

from typing import Any

import pytest

from .client import V3, q
from .harness import SEND, Homeserver, User, assert_api_error, create_room, new_txn_id, room_path
from .spec_schema import assert_error

# 25 Hangul syllables: 75 UTF-8 bytes, over bcrypt's 72-byte input limit.
KOREAN_PASSWORD = "가나다라마바사아자차카타파하거너더러머버서어저처커"


def test_long_password_register_and_login(hs: Homeserver) -> None:
    user = hs.register(password=KOREAN_PASSWORD)
    resp = hs.login(user.user_id, KOREAN_PASSWORD)
    assert resp.status == 200, resp.describe()
    assert_error(hs.login(user.user_id, KOREAN_PASSWORD[:10]), 403, "M_FORBIDDEN")


def test_long_password_change(hs: Homeserver, user: User) -> None:
    path = f"{V3}/account/password"
    first = user.client.post(path, {"new_password": KOREAN_PASSWORD, "logout_devices": False})
    assert first.status == 401, first.describe()
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
        "session": first.body["session"],
    }
    resp = user.client.post(path, {"new_password": KOREAN_PASSWORD, "logout_devices": False, "auth": auth})
    assert resp.status == 200, resp.describe()
    assert hs.login(user.user_id, KOREAN_PASSWORD).status == 200


NON_CANONICAL = [1.5, 2.0, 1e30, 2**53, -(2**53), 2**60]


@pytest.mark.parametrize("value", NON_CANONICAL)
def test_send_non_canonical_content_refused(user: User, value: Any) -> None:
    room_id = create_room(user, room_version="10")
    content = {"msgtype": "m.text", "body": "numbers", "value": {"nested": [value]}}
    resp = user.client.put(room_path(room_id, "send", "m.room.message", new_txn_id()), content)
    assert_api_error(resp, "room_send.yaml", SEND, 400, "M_BAD_JSON")


@pytest.mark.parametrize("value", [1.5, 2**53])
def test_state_non_canonical_content_refused(user: User, value: Any) -> None:
    room_id = create_room(user, room_version="10")
    resp = user.client.put(room_path(room_id, "state", "m.room.topic", ""), {"topic": "t", "n": value})
    assert_error(resp, 400, "M_BAD_JSON")
    pl = user.client.get(room_path(room_id, "state", "m.room.power_levels", "")).body
    resp = user.client.put(
        room_path(room_id, "state", "m.room.power_levels", ""), {**pl, "events_default": value}
    )
    assert_error(resp, 400, "M_BAD_JSON")


def test_safe_integer_edges_accepted(user: User) -> None:
    room_id = create_room(user, room_version="10")
    content = {"msgtype": "m.text", "body": "edges", "n": [2**53 - 1, -(2**53 - 1)]}
    resp = user.client.put(room_path(room_id, "send", "m.room.message", new_txn_id()), content)
    assert resp.status == 200, resp.describe()
    event = user.client.get(room_path(room_id, "event", resp.body["event_id"])).body
    assert event["content"]["n"] == [2**53 - 1, -(2**53 - 1)]


def test_create_room_non_canonical_initial_state_refused(user: User) -> None:
    body = {
        "room_version": "10",
        "initial_state": [{"type": "com.example.numbers", "state_key": "", "content": {"n": 1.5}}],
    }
    assert_error(user.client.post(f"{V3}/createRoom", body), 400, "M_BAD_JSON")


@pytest.mark.parametrize(
    "auth",
    [
        {"type": 5},
        {"type": True},
        {"type": ["m.login.password"]},
        {"type": {}},
        {"session": 5},
        "m.login.password",
    ],
)
@pytest.mark.parametrize("path", ["/delete_devices", "/account/deactivate"])
def test_uia_wrong_types_refused(user: User, path: str, auth: Any) -> None:
    body: dict[str, Any] = {"devices": ["NOSUCHDEVICE"]} if path == "/delete_devices" else {}
    assert_error(
        user.client.post(f"{V3}{path}", {**body, "auth": auth}), 400, ("M_BAD_JSON", "M_INVALID_PARAM")
    )
    # Nothing happened: the account still works.
    assert user.client.get(f"{V3}/account/whoami").status == 200


def test_uia_null_type_refused(user: User) -> None:
    resp = user.client.post(f"{V3}/delete_devices", {"devices": ["NOSUCHDEVICE"], "auth": {"type": None}})
    assert_error(resp, 400, ("M_BAD_JSON", "M_INVALID_PARAM"))


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/messages", {"dir": "b", "limit": "ten"}),
        ("/messages", {"dir": "b", "limit": "1.5"}),
        ("/messages", {"dir": "b", "limit": "-1"}),
    ],
)
def test_query_integer_garbage_refused(user: User, path: str, params: dict[str, str]) -> None:
    room_id = create_room(user)
    resp = user.client.get(f"{V3}/rooms/{q(room_id)}{path}", params=params)
    assert_error(resp, 400, "M_INVALID_PARAM")


def test_timestamp_to_event_garbage_ts_refused(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(
        f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event", params={"ts": "soon", "dir": "f"}
    )
    assert_error(resp, 400, "M_INVALID_PARAM")


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def test_deeply_nested_event_content(user: User) -> None:
    """Content nesting 120 levels is an event; 140 levels is refused (Synapse allows 126)."""
    room_id = create_room(user)
    ok = {"msgtype": "m.text", "body": "deep", "k": _nested(119)}
    resp = user.client.put(room_path(room_id, "send", "m.room.message", new_txn_id()), ok)
    assert resp.status == 200, resp.describe()
    too_deep = {"msgtype": "m.text", "body": "deeper", "k": _nested(139)}
    resp = user.client.put(room_path(room_id, "send", "m.room.message", new_txn_id()), too_deep)
    assert_api_error(resp, "room_send.yaml", SEND, 400, ("M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE"))
