"""Room creation: POST /createRoom with presets, visibility, aliases, invites, initial state,
creation content, power level overrides and room versions; GET /joined_rooms."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from .client import V3, q
from .harness import (
    Homeserver,
    User,
    assert_api_error,
    assert_events_schema,
    create_room,
    get_state,
    require_room_version,
    room_path,
)
from .spec_schema import assert_response_matches_spec

CREATE = "/createRoom"


def room_state(user: User, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """GET /rooms/{roomId}/state, validated, as {(type, state_key): event}."""
    resp = user.client.get(room_path(room_id, "state"))
    events = assert_response_matches_spec(resp, "rooms.yaml", "/rooms/{roomId}/state")
    assert_events_schema(events)
    return {(ev["type"], ev["state_key"]): ev for ev in events}


def test_create_room_minimal(user: User) -> None:
    room_id = create_room(user)
    assert room_id.startswith("!")
    state = room_state(user, room_id)
    create = state[("m.room.create", "")]
    assert create["sender"] == user.user_id
    assert isinstance(create["content"].get("room_version"), str)
    assert state[("m.room.member", user.user_id)]["content"]["membership"] == "join"
    assert ("m.room.power_levels", "") in state
    # No preset and no visibility: private_chat, i.e. join_rules invite.
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == "invite"
    joined = assert_response_matches_spec(
        user.client.get(f"{V3}/joined_rooms"), "list_joined_rooms.yaml", "/joined_rooms"
    )
    assert room_id in joined["joined_rooms"]


@pytest.mark.parametrize(
    ("preset", "join_rule", "history", "guest"),
    [
        ("private_chat", "invite", "shared", "can_join"),
        ("public_chat", "public", "shared", "forbidden"),
        ("trusted_private_chat", "invite", "shared", "can_join"),
    ],
)
def test_create_room_presets(
    hs: Homeserver, user: User, preset: str, join_rule: str, history: str, guest: str
) -> None:
    room_id = create_room(user, preset=preset)
    state = room_state(user, room_id)
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == join_rule
    assert state[("m.room.history_visibility", "")]["content"]["history_visibility"] == history
    if hs.is_synapse and guest == "forbidden" and ("m.room.guest_access", "") not in state:
        # Synapse deviation: public_chat sends no m.room.guest_access event at all (an absent
        # event means "forbidden"); the spec's preset table lists guest_access as set.
        return
    assert state[("m.room.guest_access", "")]["content"]["guest_access"] == guest


@pytest.mark.parametrize("room_version", ["10", "11"])
def test_trusted_private_chat_invitees_get_creator_power(
    user: User, other_user: User, room_version: str
) -> None:
    # Room versions 1-11: the invitees get the creator's power level (100) in m.room.power_levels.
    room_id = create_room(
        user, preset="trusted_private_chat", invite=[other_user.user_id], room_version=room_version
    )
    levels = get_state(user, room_id, "m.room.power_levels")
    assert levels["users"][user.user_id] == 100
    assert levels["users"][other_user.user_id] == 100
    member = get_state(user, room_id, "m.room.member", other_user.user_id)
    assert member["membership"] == "invite"


def test_trusted_private_chat_v12_additional_creators(user: User, other_user: User) -> None:
    # Room version 12: creators have infinite power and are not listed in m.room.power_levels;
    # trusted_private_chat invitees SHOULD be appended to the create event's additional_creators.
    require_room_version(user, "12")
    room_id = create_room(user, preset="trusted_private_chat", invite=[other_user.user_id], room_version="12")
    create = get_state(user, room_id, "m.room.create")
    assert create["room_version"] == "12"
    assert other_user.user_id in create.get("additional_creators", [])
    levels = get_state(user, room_id, "m.room.power_levels")
    assert user.user_id not in levels.get("users", {})
    assert other_user.user_id not in levels.get("users", {})
    # Spec: in v12 the tombstone level must be explicitly above state_default.
    assert levels["events"]["m.room.tombstone"] > levels.get("state_default", 50)


def test_visibility_public_implies_public_chat_and_directory(user: User) -> None:
    room_id = create_room(user, visibility="public")
    state = room_state(user, room_id)
    # Without a preset, visibility "public" equates to preset public_chat.
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == "public"
    resp = user.client.get(f"{V3}/directory/list/room/{q(room_id)}")
    body = assert_response_matches_spec(resp, "list_public_rooms.yaml", "/directory/list/room/{roomId}")
    assert body["visibility"] == "public"


def test_visibility_defaults_to_private(user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    resp = user.client.get(f"{V3}/directory/list/room/{q(room_id)}")
    body = assert_response_matches_spec(resp, "list_public_rooms.yaml", "/directory/list/room/{roomId}")
    assert body["visibility"] == "private"


def test_name_and_topic(user: User) -> None:
    room_id = create_room(user, name="Compat Room", topic="All about compat")
    assert get_state(user, room_id, "m.room.name")["name"] == "Compat Room"
    assert get_state(user, room_id, "m.room.topic")["topic"] == "All about compat"


def test_room_alias_name(hs: Homeserver, user: User) -> None:
    localpart = f"compat_alias_{secrets.token_hex(4)}"
    room_id = create_room(user, room_alias_name=localpart, preset="public_chat")
    alias = f"#{localpart}:{user.server_name}"
    assert get_state(user, room_id, "m.room.canonical_alias")["alias"] == alias
    resp = hs.client(user.access_token).get(f"{V3}/directory/room/{q(alias)}")
    body = assert_response_matches_spec(resp, "directory.yaml", "/directory/room/{roomAlias}")
    assert body["room_id"] == room_id


def test_room_alias_taken(user: User, other_user: User) -> None:
    localpart = f"compat_alias_{secrets.token_hex(4)}"
    create_room(user, room_alias_name=localpart)
    resp = other_user.client.post(f"{V3}/createRoom", {"room_alias_name": localpart})
    assert_api_error(resp, "create_room.yaml", CREATE, 400, "M_ROOM_IN_USE")


def test_invite_is_direct(user: User, other_user: User) -> None:
    room_id = create_room(user, invite=[other_user.user_id], is_direct=True, preset="trusted_private_chat")
    member = get_state(user, room_id, "m.room.member", other_user.user_id)
    assert member["membership"] == "invite"
    assert member.get("is_direct") is True
    # The creator's own join carries no is_direct flag.
    own = get_state(user, room_id, "m.room.member", user.user_id)
    assert own["membership"] == "join"
    assert not own.get("is_direct")


def test_invite_without_is_direct(user: User, other_user: User) -> None:
    room_id = create_room(user, invite=[other_user.user_id])
    member = get_state(user, room_id, "m.room.member", other_user.user_id)
    assert member["membership"] == "invite"
    assert not member.get("is_direct")


def test_initial_state(user: User) -> None:
    room_id = create_room(
        user,
        preset="private_chat",
        initial_state=[
            # Overrides the preset's history_visibility.
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "joined"},
            },
            {"type": "org.example.compat", "state_key": "k1", "content": {"answer": 42}},
            # state_key defaults to "".
            {"type": "org.example.compat_nokey", "content": {"x": 1}},
            # The top-level name wins over initial_state.
            {"type": "m.room.name", "state_key": "", "content": {"name": "from initial_state"}},
        ],
        name="from name",
    )
    state = room_state(user, room_id)
    assert state[("m.room.history_visibility", "")]["content"]["history_visibility"] == "joined"
    assert state[("org.example.compat", "k1")]["content"] == {"answer": 42}
    assert state[("org.example.compat_nokey", "")]["content"] == {"x": 1}
    assert state[("m.room.name", "")]["content"]["name"] == "from name"


def test_creation_content(user: User) -> None:
    room_id = create_room(
        user, creation_content={"m.federate": False, "org.example.compat": "yes"}, room_version="11"
    )
    create = get_state(user, room_id, "m.room.create")
    assert create["m.federate"] is False
    assert create["org.example.compat"] == "yes"
    assert create["room_version"] == "11"


def test_creation_content_room_type(user: User) -> None:
    room_id = create_room(user, creation_content={"type": "m.space"})
    assert get_state(user, room_id, "m.room.create")["type"] == "m.space"


def test_power_level_content_override(user: User, other_user: User) -> None:
    room_id = create_room(
        user,
        room_version="11",
        power_level_content_override={
            "events_default": 50,
            "users": {user.user_id: 100, other_user.user_id: 75},
            "events": {"org.example.compat": 20},
        },
    )
    levels = get_state(user, room_id, "m.room.power_levels")
    assert levels["events_default"] == 50
    assert levels["users"] == {user.user_id: 100, other_user.user_id: 75}
    assert levels["events"]["org.example.compat"] == 20
    # Keys the override does not name keep the defaults.
    assert levels["kick"] == 50
    assert levels["ban"] == 50


@pytest.mark.parametrize("room_version", ["10", "11"])
def test_room_version(user: User, room_version: str) -> None:
    room_id = create_room(user, room_version=room_version)
    create = get_state(user, room_id, "m.room.create")
    assert create["room_version"] == room_version
    assert room_id.endswith(f":{user.server_name}")  # versions 1-11: the id carries the server name
    if room_version == "10":
        assert create["creator"] == user.user_id  # removed from the create event in v11


def test_default_room_version_is_advertised(user: User) -> None:
    caps = user.client.get(f"{V3}/capabilities").body["capabilities"]["m.room_versions"]
    create = get_state(user, create_room(user), "m.room.create")
    assert create["room_version"] == caps["default"]


def test_unsupported_room_version(user: User) -> None:
    resp = user.client.post(f"{V3}/createRoom", {"room_version": "compat-no-such-version"})
    assert_api_error(resp, "create_room.yaml", CREATE, 400, "M_UNSUPPORTED_ROOM_VERSION")


def test_create_room_bad_preset(user: User) -> None:
    resp = user.client.post(f"{V3}/createRoom", {"preset": "compat_bogus"})
    # Not an enum value of the request schema: M_BAD_JSON per the 400 description ("the request
    # body is malformed"); M_INVALID_PARAM is the catalogue's other fit.
    assert_api_error(resp, "create_room.yaml", CREATE, 400, ("M_BAD_JSON", "M_INVALID_PARAM"))


def test_create_room_not_json(user: User) -> None:
    resp = user.client.post(f"{V3}/createRoom", data=b"{not json")
    assert_api_error(resp, "create_room.yaml", CREATE, 400, "M_NOT_JSON")


def test_create_room_requires_token(hs: Homeserver) -> None:
    assert_api_error(
        hs.client().post(f"{V3}/createRoom", {}), "create_room.yaml", CREATE, 401, "M_MISSING_TOKEN"
    )


def test_joined_rooms(user: User) -> None:
    first = create_room(user)
    second = create_room(user, preset="public_chat")
    body = assert_response_matches_spec(
        user.client.get(f"{V3}/joined_rooms"), "list_joined_rooms.yaml", "/joined_rooms"
    )
    assert {first, second} <= set(body["joined_rooms"])
