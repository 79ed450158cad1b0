"""Client config (account data): /user/{userId}/account_data/{type} and
/user/{userId}/rooms/{roomId}/account_data/{type}, including m.direct."""

from __future__ import annotations

import secrets
from typing import Any

from .client import V3, q
from .harness import User, assert_api_error, create_room, event_schema_ref
from .spec_schema import assert_response_matches_spec, validate

GLOBAL = "/user/{userId}/account_data/{type}"
ROOM = "/user/{userId}/rooms/{roomId}/account_data/{type}"


def global_path(user_id: str, data_type: str) -> str:
    return f"{V3}/user/{q(user_id)}/account_data/{q(data_type)}"


def room_path_ad(user_id: str, room_id: str, data_type: str) -> str:
    return f"{V3}/user/{q(user_id)}/rooms/{q(room_id)}/account_data/{q(data_type)}"


def put_global(user: User, data_type: str, content: dict[str, Any]) -> None:
    resp = user.client.put(global_path(user.user_id, data_type), content)
    assert assert_response_matches_spec(resp, "account-data.yaml", GLOBAL) == {}


def get_global(user: User, data_type: str) -> dict[str, Any]:
    body: dict[str, Any] = assert_response_matches_spec(
        user.client.get(global_path(user.user_id, data_type)), "account-data.yaml", GLOBAL
    )
    return body


def put_room(user: User, room_id: str, data_type: str, content: dict[str, Any]) -> None:
    resp = user.client.put(room_path_ad(user.user_id, room_id, data_type), content)
    assert assert_response_matches_spec(resp, "account-data.yaml", ROOM) == {}


def get_room(user: User, room_id: str, data_type: str) -> dict[str, Any]:
    body: dict[str, Any] = assert_response_matches_spec(
        user.client.get(room_path_ad(user.user_id, room_id, data_type)), "account-data.yaml", ROOM
    )
    return body


def new_type() -> str:
    return f"org.example.compat.{secrets.token_hex(4)}"


def test_global_roundtrip(user: User) -> None:
    data_type = new_type()
    content = {"nested": {"list": [1, "two", None, True]}, "n": 3.5}
    put_global(user, data_type, content)
    assert get_global(user, data_type) == content
    put_global(user, data_type, {"replaced": True})
    assert get_global(user, data_type) == {"replaced": True}


def test_room_roundtrip_separate_from_global(user: User) -> None:
    room_a, room_b = create_room(user), create_room(user)
    data_type = new_type()
    put_global(user, data_type, {"scope": "global"})
    put_room(user, room_a, data_type, {"scope": "room a"})
    assert get_room(user, room_a, data_type) == {"scope": "room a"}
    assert get_global(user, data_type) == {"scope": "global"}
    resp = user.client.get(room_path_ad(user.user_id, room_b, data_type))
    assert_api_error(resp, "account-data.yaml", ROOM, 404, "M_NOT_FOUND")


def test_global_unknown_type(user: User) -> None:
    resp = user.client.get(global_path(user.user_id, new_type()))
    assert_api_error(resp, "account-data.yaml", GLOBAL, 404, "M_NOT_FOUND")


def test_room_unknown_type(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.get(room_path_ad(user.user_id, room_id, new_type()))
    assert_api_error(resp, "account-data.yaml", ROOM, 404, "M_NOT_FOUND")


def test_other_users_account_data(user: User, other_user: User) -> None:
    data_type = new_type()
    put_global(other_user, data_type, {"private": True})
    room_id = create_room(other_user)
    put_room(other_user, room_id, data_type, {"private": True})
    for resp in (
        user.client.get(global_path(other_user.user_id, data_type)),
        user.client.put(global_path(other_user.user_id, data_type), {"x": 1}),
    ):
        assert_api_error(resp, "account-data.yaml", GLOBAL, 403, "M_FORBIDDEN")
    for resp in (
        user.client.get(room_path_ad(other_user.user_id, room_id, data_type)),
        user.client.put(room_path_ad(other_user.user_id, room_id, data_type), {"x": 1}),
    ):
        assert_api_error(resp, "account-data.yaml", ROOM, 403, "M_FORBIDDEN")
    assert get_global(other_user, data_type) == {"private": True}


def test_fully_read_is_server_managed(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.put(global_path(user.user_id, "m.fully_read"), {"event_id": "$compat"})
    assert_api_error(resp, "account-data.yaml", GLOBAL, 405, "M_BAD_JSON")
    resp = user.client.put(room_path_ad(user.user_id, room_id, "m.fully_read"), {"event_id": "$compat"})
    assert_api_error(resp, "account-data.yaml", ROOM, 405, "M_BAD_JSON")


def test_m_direct(user: User, other_user: User) -> None:
    room_id = create_room(user, invite=[other_user.user_id], is_direct=True, preset="trusted_private_chat")
    content = {other_user.user_id: [room_id]}
    put_global(user, "m.direct", content)
    got = get_global(user, "m.direct")
    assert got == content
    ref = event_schema_ref("m.direct")
    assert ref is not None
    validate(ref, {"type": "m.direct", "content": got}, "m.direct account data")


def test_room_bad_room_id(user: User) -> None:
    data_type = new_type()
    resp = user.client.put(room_path_ad(user.user_id, "compat_not_a_room", data_type), {"x": 1})
    assert_api_error(resp, "account-data.yaml", ROOM, 400, "M_INVALID_PARAM")
    resp = user.client.get(room_path_ad(user.user_id, "compat_not_a_room", data_type))
    assert_api_error(resp, "account-data.yaml", ROOM, 400, "M_INVALID_PARAM")


def test_body_not_an_object(user: User) -> None:
    resp = user.client.put(global_path(user.user_id, new_type()), data=b"[1, 2]")
    assert_api_error(resp, "account-data.yaml", GLOBAL, 400, ("M_BAD_JSON", "M_NOT_JSON"))
    resp = user.client.put(global_path(user.user_id, new_type()), data=b"{nope")
    assert_api_error(resp, "account-data.yaml", GLOBAL, 400, "M_NOT_JSON")


def test_account_data_requires_token(user: User) -> None:
    resp = user.client.get(global_path(user.user_id, "m.direct"), access_token=None)
    assert_api_error(resp, "account-data.yaml", GLOBAL, 401, "M_MISSING_TOKEN")
