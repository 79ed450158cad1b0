"""Room version 12 (rooms/v12.md): room ids derived from the create event, creators with infinite
power who are not listed in m.room.power_levels, and the everyday flows in such a room. Skipped on
servers that do not offer version 12."""

from __future__ import annotations

import re

from .client import V3
from .harness import (
    User,
    assert_api_error,
    create_room,
    get_messages,
    get_state,
    invite_user,
    join_room,
    leave_room,
    put_state,
    require_room_version,
    room_path,
    send_text,
)
from .spec_schema import assert_response_matches_spec

# "!" + URL-safe unpadded base64 of a SHA-256 (appendices: room ids without a domain).
V12_ROOM_ID = re.compile(r"^![A-Za-z0-9_-]{43}$")


def test_v12_room_id_is_the_create_event_id(user: User) -> None:
    require_room_version(user, "12")
    room_id = create_room(user, room_version="12")
    assert V12_ROOM_ID.match(room_id), room_id
    resp = user.client.get(room_path(room_id, "state"))
    events = assert_response_matches_spec(resp, "rooms.yaml", "/rooms/{roomId}/state")
    create = next(e for e in events if e["type"] == "m.room.create")
    assert room_id == "!" + create["event_id"][1:]
    assert create["content"]["room_version"] == "12"
    levels = get_state(user, room_id, "m.room.power_levels")
    # Creators have infinite power and are not listed.
    assert user.user_id not in levels.get("users", {})
    assert levels["events"]["m.room.tombstone"] > levels.get("state_default", 50)


def test_v12_everyday_flows(user: User, other_user: User) -> None:
    require_room_version(user, "12")
    room_id = create_room(user, room_version="12", preset="private_chat")
    invite_user(user, room_id, other_user.user_id)
    assert join_room(other_user, room_id) == room_id
    event_id = send_text(other_user, room_id, "hello twelve")
    put_state(user, room_id, "m.room.topic", {"topic": "v12"})
    assert get_state(other_user, room_id, "m.room.topic") == {"topic": "v12"}

    chunk = get_messages(user, room_id, limit=20)["chunk"]
    assert event_id in [e["event_id"] for e in chunk]
    assert all(e["room_id"] == room_id for e in chunk)

    # The creator cannot be listed in the power levels; another user can be made an admin, and
    # even at 100 cannot kick the creator.
    levels = get_state(user, room_id, "m.room.power_levels")
    resp = user.client.put(
        room_path(room_id, "state", "m.room.power_levels", ""), {**levels, "users": {user.user_id: 100}}
    )
    assert_api_error(resp, "room_state.yaml", "/rooms/{roomId}/state/{eventType}/{stateKey}", (400, 403))
    put_state(user, room_id, "m.room.power_levels", {**levels, "users": {other_user.user_id: 100}})
    resp = other_user.client.post(room_path(room_id, "kick"), {"user_id": user.user_id})
    assert_api_error(resp, "kicking.yaml", "/rooms/{roomId}/kick", 403)

    leave_room(other_user, room_id)
    assert get_state(user, room_id, "m.room.member", other_user.user_id)["membership"] == "leave"


def test_v12_upgrade_from_11(user: User) -> None:
    require_room_version(user, "11")
    require_room_version(user, "12")
    old = create_room(user, room_version="11", name="to twelve")
    resp = user.client.post(room_path(old, "upgrade"), {"new_version": "12"})
    new = assert_response_matches_spec(resp, "room_upgrades.yaml", "/rooms/{roomId}/upgrade")[
        "replacement_room"
    ]
    assert V12_ROOM_ID.match(new), new
    assert get_state(user, old, "m.room.tombstone")["replacement_room"] == new
    create = get_state(user, new, "m.room.create")
    assert create["room_version"] == "12"
    assert create["predecessor"]["room_id"] == old
    assert get_state(user, new, "m.room.name") == {"name": "to twelve"}
    assert user.user_id not in get_state(user, new, "m.room.power_levels").get("users", {})
    joined = assert_response_matches_spec(
        user.client.get(f"{V3}/joined_rooms"), "list_joined_rooms.yaml", "/joined_rooms"
    )
    assert new in joined["joined_rooms"]
