"""Room upgrades (room_upgrades.yaml) and reporting content (report_content.yaml)."""

from __future__ import annotations

import secrets
from typing import Any

from .client import V3, q
from .harness import (
    Homeserver,
    User,
    assert_api_error,
    assert_event_schema,
    create_room,
    join_room,
    require_room_version,
    room_path,
    send_text,
)
from .spec_schema import assert_response_matches_spec

UPGRADE = "/rooms/{roomId}/upgrade"
REPORT_EVENT = "/rooms/{roomId}/report/{eventId}"
REPORT_ROOM = "/rooms/{roomId}/report"
REPORT_USER = "/users/{userId}/report"


def upgrade(user: User, room_id: str, body: dict[str, Any]) -> Any:
    return user.client.post(room_path(room_id, "upgrade"), body)


def state_event(user: User, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
    """The full state event (GET /state with ?format=event is not universal: read /state)."""
    resp = user.client.get(room_path(room_id, "state"))
    assert resp.status == 200, resp.describe()
    for event in resp.body:
        if event["type"] == event_type and event["state_key"] == state_key:
            assert_event_schema(event, room_id)
            return dict(event)
    raise AssertionError(f"no {event_type} state in {room_id}")


# --------------------------------------------------------------------------- upgrades


def test_upgrade_room(hs: Homeserver, user: User, other_user: User) -> None:
    require_room_version(user, "10")
    require_room_version(user, "11")
    alias_localpart = f"upg-{secrets.token_hex(4)}"
    room_id = create_room(
        user,
        room_version="10",
        preset="public_chat",
        name="Before the upgrade",
        topic="Topic to keep",
        room_alias_name=alias_localpart,
    )
    alias = f"#{alias_localpart}:{user.server_name}"
    join_room(other_user, room_id)
    send_text(other_user, room_id, "hello from the old room")

    body = assert_response_matches_spec(
        upgrade(user, room_id, {"new_version": "11"}), "room_upgrades.yaml", UPGRADE
    )
    new_room = body["replacement_room"]
    assert isinstance(new_room, str) and new_room.startswith("!") and new_room != room_id

    create = state_event(user, new_room, "m.room.create")["content"]
    assert create["room_version"] == "11"
    assert create["predecessor"]["room_id"] == room_id
    event_id = create["predecessor"].get("event_id")
    assert event_id is None or event_id.startswith("$")
    assert state_event(user, new_room, "m.room.name")["content"]["name"] == "Before the upgrade"
    assert state_event(user, new_room, "m.room.topic")["content"]["topic"] == "Topic to keep"
    assert state_event(user, new_room, "m.room.join_rules")["content"]["join_rule"] == "public"
    assert state_event(user, new_room, "m.room.power_levels")["content"]["users"][user.user_id] == 100
    assert state_event(user, new_room, "m.room.canonical_alias")["content"]["alias"] == alias

    tombstone = state_event(user, room_id, "m.room.tombstone")
    assert tombstone["content"]["replacement_room"] == new_room
    assert tombstone["sender"] == user.user_id
    old_pl = state_event(user, room_id, "m.room.power_levels")["content"]
    assert old_pl["events_default"] >= 50 and old_pl["invite"] >= 50

    # The alias now leads to the new room.
    resp = user.client.get(f"{V3}/directory/room/{q(alias)}")
    assert resp.status == 200 and resp.body["room_id"] == new_room, resp.describe()
    # Members are not moved: they follow the tombstone. In the old room they can no longer talk.
    resp = other_user.client.get(room_path(new_room, "state", "m.room.member", other_user.user_id))
    assert resp.status in (403, 404), resp.describe()
    resp = other_user.client.put(
        room_path(room_id, "send", "m.room.message", "after"), {"msgtype": "m.text", "body": "x"}
    )
    assert_api_error(resp, "room_send.yaml", "/rooms/{roomId}/send/{eventType}/{txnId}", 403, "M_FORBIDDEN")
    join_room(other_user, new_room)
    send_text(other_user, new_room, "hello from the new room")


def test_upgrade_errors(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    resp = upgrade(user, room_id, {"new_version": "this-version-does-not-exist"})
    assert_api_error(resp, "room_upgrades.yaml", UPGRADE, 400, "M_UNSUPPORTED_ROOM_VERSION")
    resp = upgrade(user, room_id, {})
    assert_api_error(resp, "room_upgrades.yaml", UPGRADE, 400, "M_MISSING_PARAM")
    # A member without the power to send m.room.tombstone; a non-member.
    resp = upgrade(other_user, room_id, {"new_version": "10"})
    assert_api_error(resp, "room_upgrades.yaml", UPGRADE, 403, "M_FORBIDDEN")
    outsider = hs.register()
    resp = upgrade(outsider, room_id, {"new_version": "10"})
    assert_api_error(resp, "room_upgrades.yaml", UPGRADE, 403, "M_FORBIDDEN")
    resp = upgrade(user, f"!doesnotexist{secrets.token_hex(4)}:{user.server_name}", {"new_version": "10"})
    assert_api_error(resp, "room_upgrades.yaml", UPGRADE, 404, "M_NOT_FOUND")
    # Nothing happened.
    resp = user.client.get(room_path(room_id, "state", "m.room.tombstone", ""))
    assert resp.status == 404, resp.describe()


# --------------------------------------------------------------------------- reports


def test_report_event(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user, preset="public_chat")
    join_room(other_user, room_id)
    event_id = send_text(user, room_id, "something offensive")
    path = room_path(room_id, "report", event_id)

    resp = other_user.client.post(path, {"reason": "this makes me sad", "score": -100})
    assert assert_response_matches_spec(resp, "report_content.yaml", REPORT_EVENT) == {}
    resp = other_user.client.post(path, {})
    assert_response_matches_spec(resp, "report_content.yaml", REPORT_EVENT)

    resp = other_user.client.post(path, {"reason": 12})
    assert_api_error(resp, "report_content.yaml", REPORT_EVENT, 400, "M_BAD_JSON")
    # Not joined to the room; an unknown event.
    outsider = hs.register()
    resp = outsider.client.post(path, {"reason": "x"})
    assert_api_error(resp, "report_content.yaml", REPORT_EVENT, 404, "M_NOT_FOUND")
    resp = other_user.client.post(
        room_path(room_id, "report", f"$unknown{secrets.token_hex(8)}"), {"reason": "x"}
    )
    assert_api_error(resp, "report_content.yaml", REPORT_EVENT, 404, "M_NOT_FOUND")


def test_report_room(hs: Homeserver, user: User, other_user: User) -> None:
    room_id = create_room(user)  # private: the reporter is not a member, and need not be
    resp = other_user.client.post(room_path(room_id, "report"), {"reason": "spam room"})
    assert assert_response_matches_spec(resp, "report_content.yaml", REPORT_ROOM) == {}
    resp = other_user.client.post(room_path(room_id, "report"), {})
    assert_api_error(resp, "report_content.yaml", REPORT_ROOM, 400, "M_MISSING_PARAM")
    missing = f"!doesnotexist{secrets.token_hex(4)}:{user.server_name}"
    resp = other_user.client.post(room_path(missing, "report"), {"reason": "x"})
    assert_api_error(resp, "report_content.yaml", REPORT_ROOM, 404, "M_NOT_FOUND")


def test_report_user(hs: Homeserver, user: User, other_user: User) -> None:
    resp = user.client.post(f"{V3}/users/{q(other_user.user_id)}/report", {"reason": "harassment"})
    assert assert_response_matches_spec(resp, "report_content.yaml", REPORT_USER) == {}
    # Unknown users are accepted too: the answer does not reveal who exists.
    ghost = f"@ghost-{secrets.token_hex(4)}:{user.server_name}"
    resp = user.client.post(f"{V3}/users/{q(ghost)}/report", {"reason": "x"})
    assert_response_matches_spec(resp, "report_content.yaml", REPORT_USER)
    resp = user.client.post(f"{V3}/users/{q(other_user.user_id)}/report", {})
    assert_api_error(resp, "report_content.yaml", REPORT_USER, 400, "M_MISSING_PARAM")
