"""Room aliases and the published room directory: /directory/room/{roomAlias},
/rooms/{roomId}/aliases, /directory/list/room/{roomId}, GET and POST /publicRooms.

Publishing needs ``room_list_publication_rules`` to allow non-admins (the suite's launcher and
``bench/synapse_ref.py`` both set ``[{action: allow}]``; the default allows nobody but admins).
"""

from __future__ import annotations

import secrets
from typing import Any

from .client import V3, q
from .harness import (
    Homeserver,
    User,
    assert_api_error,
    create_room,
    join_room,
    room_path,
)
from .spec_schema import assert_request_matches_spec, assert_response_matches_spec

ALIAS = "/directory/room/{roomAlias}"
ALIASES = "/rooms/{roomId}/aliases"
VISIBILITY = "/directory/list/room/{roomId}"
PUBLIC = "/publicRooms"


def new_alias(user: User) -> str:
    return f"#compat_{secrets.token_hex(5)}:{user.server_name}"


def alias_path(alias: str) -> str:
    return f"{V3}/directory/room/{q(alias)}"


def put_alias(user: User, alias: str, room_id: str) -> None:
    body = {"room_id": room_id}
    assert_request_matches_spec("directory.yaml", ALIAS, "PUT", body)
    assert (
        assert_response_matches_spec(user.client.put(alias_path(alias), body), "directory.yaml", ALIAS) == {}
    )


def local_aliases(user: User, room_id: str) -> list[str]:
    body = assert_response_matches_spec(
        user.client.get(room_path(room_id, "aliases")), "directory.yaml", ALIASES
    )
    aliases: list[str] = body["aliases"]
    return aliases


def set_visibility(user: User, room_id: str, visibility: str) -> None:
    resp = user.client.put(f"{V3}/directory/list/room/{q(room_id)}", {"visibility": visibility})
    assert assert_response_matches_spec(resp, "list_public_rooms.yaml", VISIBILITY) == {}


def get_visibility(hs: Homeserver, room_id: str) -> str:
    resp = hs.client().get(f"{V3}/directory/list/room/{q(room_id)}")  # no auth needed
    return str(assert_response_matches_spec(resp, "list_public_rooms.yaml", VISIBILITY)["visibility"])


def public_rooms_get(hs: Homeserver, user: User, **params: Any) -> dict[str, Any]:
    """GET /publicRooms without an access token (the spec gives it no security requirement)."""
    resp = hs.client().get(f"{V3}/publicRooms", params=params)
    if hs.is_synapse and resp.status == 401:
        # Synapse deviation (configurable): with its default allow_public_rooms_without_auth:
        # false it answers 401 M_MISSING_TOKEN; the request is repeated authenticated.
        assert_api_error(resp, "list_public_rooms.yaml", PUBLIC, 401, "M_MISSING_TOKEN")
        resp = user.client.get(f"{V3}/publicRooms", params=params)
    out: dict[str, Any] = assert_response_matches_spec(resp, "list_public_rooms.yaml", PUBLIC)
    return out


def public_rooms_post(user: User, body: dict[str, Any]) -> dict[str, Any]:
    assert_request_matches_spec("list_public_rooms.yaml", PUBLIC, "POST", body)
    out: dict[str, Any] = assert_response_matches_spec(
        user.client.post(f"{V3}/publicRooms", body), "list_public_rooms.yaml", PUBLIC
    )
    return out


def public_room_ids(body: dict[str, Any]) -> list[str]:
    return [room["room_id"] for room in body["chunk"]]


# --------------------------------------------------------------------------- aliases


def test_alias_lifecycle(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    alias = new_alias(user)
    put_alias(user, alias, room_id)
    # Resolving needs no access token.
    body = assert_response_matches_spec(hs.client().get(alias_path(alias)), "directory.yaml", ALIAS)
    assert body["room_id"] == room_id
    assert user.server_name in body.get("servers", [user.server_name])
    assert alias in local_aliases(user, room_id)

    resp = user.client.delete(alias_path(alias))
    assert assert_response_matches_spec(resp, "directory.yaml", ALIAS) == {}
    assert_api_error(hs.client().get(alias_path(alias)), "directory.yaml", ALIAS, 404, "M_NOT_FOUND")
    assert alias not in local_aliases(user, room_id)


def test_alias_already_exists(user: User, other_user: User) -> None:
    room_id = create_room(user)
    alias = new_alias(user)
    put_alias(user, alias, room_id)
    other_room = create_room(other_user)
    for who, target in ((user, room_id), (other_user, other_room)):
        resp = who.client.put(alias_path(alias), {"room_id": target})
        # The spec's example errcode for 409 is M_UNKNOWN.
        assert_api_error(resp, "directory.yaml", ALIAS, 409, ("M_UNKNOWN", "M_ROOM_IN_USE"))
    assert user.client.get(alias_path(alias)).body["room_id"] == room_id


def test_alias_invalid(user: User) -> None:
    room_id = create_room(user)
    resp = user.client.put(f"{V3}/directory/room/compat_no_sigil", {"room_id": room_id})
    assert_api_error(resp, "directory.yaml", ALIAS, 400, "M_INVALID_PARAM")
    resp = user.client.get(f"{V3}/directory/room/compat_no_sigil")
    assert_api_error(resp, "directory.yaml", ALIAS, 400, "M_INVALID_PARAM")


def test_alias_on_other_server(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    resp = user.client.put(
        alias_path(f"#compat_{secrets.token_hex(4)}:elsewhere.invalid"), {"room_id": room_id}
    )
    # Only local aliases can be created. Synapse deviation: 400 M_UNKNOWN ("Room alias must be
    # local"); the spec's 400 for an unusable alias carries M_INVALID_PARAM.
    assert_api_error(
        resp,
        "directory.yaml",
        ALIAS,
        400,
        ("M_INVALID_PARAM", "M_UNKNOWN") if hs.is_synapse else "M_INVALID_PARAM",
    )


def test_alias_put_missing_room_id(user: User) -> None:
    resp = user.client.put(alias_path(new_alias(user)), {})
    # Missing required key: M_BAD_JSON or M_MISSING_PARAM per the catalogue.
    assert_api_error(resp, "directory.yaml", ALIAS, 400, ("M_BAD_JSON", "M_MISSING_PARAM"))


def test_alias_delete_unknown(user: User) -> None:
    resp = user.client.delete(alias_path(new_alias(user)))
    assert_api_error(resp, "directory.yaml", ALIAS, 404, "M_NOT_FOUND")


def test_alias_delete_by_other_user(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    alias = new_alias(user)
    put_alias(user, alias, room_id)
    resp = other_user.client.delete(alias_path(alias))
    # The spec lets servers restrict deletion to the alias creator (and admins); a member
    # without power over m.room.canonical_alias is refused with 403 M_FORBIDDEN.
    assert_api_error(resp, "directory.yaml", ALIAS, 403, "M_FORBIDDEN")
    assert user.client.get(alias_path(alias)).body["room_id"] == room_id


def test_alias_requires_token(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    resp = hs.client().put(alias_path(new_alias(user)), {"room_id": room_id})
    assert_api_error(resp, "directory.yaml", ALIAS, 401, "M_MISSING_TOKEN")


def test_local_aliases_lists_all(user: User) -> None:
    localpart = f"compat_{secrets.token_hex(4)}"
    room_id = create_room(user, room_alias_name=localpart)
    extra = new_alias(user)
    put_alias(user, extra, room_id)
    assert set(local_aliases(user, room_id)) == {f"#{localpart}:{user.server_name}", extra}


def test_local_aliases_not_member(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="private_chat")
    resp = other_user.client.get(room_path(room_id, "aliases"))
    assert_api_error(resp, "directory.yaml", ALIASES, 403, "M_FORBIDDEN")


def test_local_aliases_world_readable(user: User, other_user: User) -> None:
    # Any user may list the aliases of a world_readable room.
    room_id = create_room(
        user,
        preset="public_chat",
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": "world_readable"},
            }
        ],
    )
    alias = new_alias(user)
    put_alias(user, alias, room_id)
    assert local_aliases(other_user, room_id) == [alias]


# --------------------------------------------------------------------------- directory visibility


def test_directory_visibility_roundtrip(hs: Homeserver, user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    assert get_visibility(hs, room_id) == "private"
    set_visibility(user, room_id, "public")
    assert get_visibility(hs, room_id) == "public"
    set_visibility(user, room_id, "public")  # no change needed: still 200
    set_visibility(user, room_id, "private")
    assert get_visibility(hs, room_id) == "private"


def test_directory_visibility_unknown_room(hs: Homeserver, user: User) -> None:
    ghost = f"!compat_nosuch_{secrets.token_hex(6)}:{user.server_name}"
    resp = hs.client().get(f"{V3}/directory/list/room/{q(ghost)}")
    assert_api_error(resp, "list_public_rooms.yaml", VISIBILITY, 404, "M_NOT_FOUND")
    resp = user.client.put(f"{V3}/directory/list/room/{q(ghost)}", {"visibility": "public"})
    if hs.is_synapse and resp.status == 400:
        # Synapse deviation: 400 M_UNKNOWN ("Unknown room"); the spec documents 404 M_NOT_FOUND.
        assert_api_error(resp, "list_public_rooms.yaml", VISIBILITY, 400, "M_UNKNOWN")
        return
    assert_api_error(resp, "list_public_rooms.yaml", VISIBILITY, 404, "M_NOT_FOUND")


def test_directory_visibility_by_non_moderator(user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    resp = other_user.client.put(f"{V3}/directory/list/room/{q(room_id)}", {"visibility": "public"})
    # Servers MAY restrict this (Synapse: the room's moderators and admins); 403 M_FORBIDDEN.
    assert_api_error(resp, "list_public_rooms.yaml", VISIBILITY, 403, "M_FORBIDDEN")


# --------------------------------------------------------------------------- /publicRooms


def test_public_rooms_lists_published_room(hs: Homeserver, user: User) -> None:
    term = f"compatsearch{secrets.token_hex(4)}"
    localpart = f"compat_{secrets.token_hex(4)}"
    room_id = create_room(
        user, preset="public_chat", name=f"Room {term}", topic="a topic", room_alias_name=localpart
    )
    unpublished = create_room(user, preset="public_chat", name=f"Hidden {term}")
    set_visibility(user, room_id, "public")

    listed: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    for _ in range(100):  # walk the whole directory
        body = public_rooms_get(hs, user, **params)
        listed += public_room_ids(body)
        if "next_batch" not in body:
            break
        params["since"] = body["next_batch"]
    assert room_id in listed
    assert unpublished not in listed

    found = public_rooms_post(user, {"filter": {"generic_search_term": term}})
    assert public_room_ids(found) == [room_id]
    entry = found["chunk"][0]
    assert entry["name"] == f"Room {term}"
    assert entry["topic"] == "a topic"
    assert entry["num_joined_members"] == 1
    assert entry["world_readable"] is False
    assert entry["guest_can_join"] is False
    assert entry.get("canonical_alias") == f"#{localpart}:{user.server_name}"
    assert entry.get("join_rule", "public") == "public"

    set_visibility(user, room_id, "private")
    assert public_rooms_post(user, {"filter": {"generic_search_term": term}})["chunk"] == []


def test_public_rooms_search_is_case_insensitive_on_topic(user: User) -> None:
    term = f"CompatTopic{secrets.token_hex(4)}"
    room_id = create_room(user, visibility="public", topic=f"about {term}")
    found = public_rooms_post(user, {"filter": {"generic_search_term": term.lower()}})
    assert public_room_ids(found) == [room_id]


def test_public_rooms_visibility_public_at_creation(user: User) -> None:
    term = f"compatvis{secrets.token_hex(4)}"
    room_id = create_room(user, visibility="public", name=term)
    assert public_room_ids(public_rooms_post(user, {"filter": {"generic_search_term": term}})) == [room_id]


def test_public_rooms_pagination(user: User) -> None:
    term = f"compatpage{secrets.token_hex(4)}"
    rooms = {create_room(user, visibility="public", name=f"{term} {i}") for i in range(3)}
    seen: list[str] = []
    body = public_rooms_post(user, {"limit": 2, "filter": {"generic_search_term": term}})
    seen += public_room_ids(body)
    assert len(body["chunk"]) == 2
    assert "next_batch" in body
    body = public_rooms_post(
        user, {"limit": 2, "since": body["next_batch"], "filter": {"generic_search_term": term}}
    )
    seen += public_room_ids(body)
    assert sorted(seen) == sorted(rooms)
    assert "next_batch" not in body


def test_public_rooms_get_limit(hs: Homeserver, user: User) -> None:
    for _ in range(2):
        create_room(user, visibility="public")
    body = public_rooms_get(hs, user, limit=1)
    assert len(body["chunk"]) == 1
    assert "next_batch" in body


def test_public_rooms_get_authenticated(user: User) -> None:
    resp = user.client.get(f"{V3}/publicRooms")
    assert_response_matches_spec(resp, "list_public_rooms.yaml", PUBLIC)


def test_public_rooms_post_requires_token(hs: Homeserver) -> None:
    assert_api_error(
        hs.client().post(f"{V3}/publicRooms", {}), "list_public_rooms.yaml", PUBLIC, 401, "M_MISSING_TOKEN"
    )
