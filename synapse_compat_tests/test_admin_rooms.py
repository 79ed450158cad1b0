"""Synapse's room admin API (docs/admin_api/rooms.md, purge_history_api.md): list and inspect
rooms, block them, delete them (v2 background task and v1), purge history, make a room admin, join
users, forward extremities, read a room's messages as an admin.

synapse-admin and scripts parse these shapes, so the tests pin the fields Synapse returns.
"""

from __future__ import annotations

from typing import Any

from .admin_support import ADMIN_V1, ADMIN_V2, assert_admin_only, poll
from .client import Response, q
from .harness import (
    V3,
    Homeserver,
    User,
    create_room,
    get_messages,
    invite_user,
    join_room,
    send_text,
    sync_once,
)
from .spec_schema import assert_error

ROOM_LIST_FIELDS = {
    "room_id",
    "name",
    "canonical_alias",
    "joined_members",
    "joined_local_members",
    "version",
    "creator",
    "encryption",
    "federatable",
    "public",
    "join_rules",
    "guest_access",
    "history_visibility",
    "state_events",
    "room_type",
}
ROOM_DETAIL_FIELDS = ROOM_LIST_FIELDS | {
    "topic",
    "avatar",
    "joined_local_devices",
    "forgotten",
    "tombstoned",
    "replacement_room",
}
SHUTDOWN_FIELDS = {"kicked_users", "failed_to_kick_users", "local_aliases", "new_room_id"}


def _rooms(admin: User, **params: Any) -> dict[str, Any]:
    resp = admin.client.get(f"{ADMIN_V1}/rooms", params=params)
    assert resp.status == 200, resp.describe()
    body: dict[str, Any] = resp.body
    assert isinstance(body["rooms"], list) and isinstance(body["total_rooms"], int), resp.describe()
    assert isinstance(body["offset"], int), resp.describe()
    return body


def _listed(admin: User, room_id: str) -> dict[str, Any]:
    """The room's entry in the room list (Synapse fills its room stats asynchronously)."""

    def fetch() -> Response:
        return admin.client.get(f"{ADMIN_V1}/rooms", params={"search_term": room_id})

    resp = poll(fetch, lambda r: r.status == 200 and bool(r.body["rooms"]), f"room {room_id} in the list")
    entry: dict[str, Any] = resp.body["rooms"][0]
    return entry


def _wait_deleted(admin: User, delete_id: str) -> dict[str, Any]:
    resp = poll(
        lambda: admin.client.get(f"{ADMIN_V2}/rooms/delete_status/{q(delete_id)}"),
        lambda r: r.status != 200 or r.body.get("status") in ("complete", "failed"),
        f"delete {delete_id}",
    )
    assert resp.status == 200, resp.describe()
    body: dict[str, Any] = resp.body
    assert body["status"] == "complete", resp.describe()
    return body


def test_non_admins_are_forbidden(hs: Homeserver, user: User) -> None:
    room_id = create_room(user)
    rid = q(room_id)
    assert_admin_only(
        hs,
        user,
        [
            ("GET", f"{ADMIN_V1}/rooms", None),
            ("GET", f"{ADMIN_V1}/rooms/{rid}", None),
            ("GET", f"{ADMIN_V1}/rooms/{rid}/members", None),
            ("GET", f"{ADMIN_V1}/rooms/{rid}/state", None),
            ("GET", f"{ADMIN_V1}/rooms/{rid}/messages", None),
            ("GET", f"{ADMIN_V1}/rooms/{rid}/block", None),
            ("PUT", f"{ADMIN_V1}/rooms/{rid}/block", {"block": True}),
            ("POST", f"{ADMIN_V1}/rooms/{rid}/make_room_admin", {}),
            ("POST", f"{ADMIN_V1}/join/{rid}", {"user_id": user.user_id}),
            ("GET", f"{ADMIN_V1}/rooms/{rid}/forward_extremities", None),
            ("POST", f"{ADMIN_V1}/purge_history/{rid}", {"purge_up_to_ts": 1}),
            ("GET", f"{ADMIN_V1}/purge_history_status/nope", None),
            # No body: still 403, the admin check comes first.
            ("DELETE", f"{ADMIN_V2}/rooms/{rid}", None),
            ("DELETE", f"{ADMIN_V2}/rooms/{rid}", {}),
            ("DELETE", f"{ADMIN_V1}/rooms/{rid}", {}),
            ("GET", f"{ADMIN_V2}/rooms/{rid}/delete_status", None),
            ("GET", f"{ADMIN_V2}/rooms/delete_status/nope", None),
            ("GET", f"{ADMIN_V1}/rooms/!unknown:{user.server_name}", None),
        ],
    )
    # Nothing happened to the room.
    assert send_text(user, room_id, "still here")


def test_list_rooms_search_order_and_paging(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    tag = user.localpart
    names = [f"{tag} alpha", f"{tag} bravo", f"{tag} charlie"]
    room_ids = [create_room(user, name=name, preset="public_chat") for name in names]
    for room_id in room_ids:
        _listed(admin, room_id)

    found = _rooms(admin, search_term=tag)
    assert found["total_rooms"] == 3 and found["offset"] == 0, found
    assert [r["name"] for r in found["rooms"]] == names, found
    entry = found["rooms"][0]
    assert set(entry) >= ROOM_LIST_FIELDS, entry
    assert entry["room_id"] == room_ids[0] and entry["creator"] == user.user_id, entry
    assert entry["joined_members"] == 1 and entry["joined_local_members"] == 1, entry
    assert entry["join_rules"] == "public" and entry["federatable"] is True, entry
    assert entry["state_events"] >= 5 and isinstance(entry["version"], str), entry
    assert "next_batch" not in found and "prev_batch" not in found, found

    backwards = _rooms(admin, search_term=tag, dir="b")
    assert [r["name"] for r in backwards["rooms"]] == names[::-1], backwards

    page1 = _rooms(admin, search_term=tag, limit=2)
    assert [r["room_id"] for r in page1["rooms"]] == room_ids[:2] and page1["next_batch"] == 2, page1
    page2 = _rooms(admin, search_term=tag, limit=2, **{"from": page1["next_batch"]})
    assert [r["room_id"] for r in page2["rooms"]] == room_ids[2:], page2
    assert page2["offset"] == 2 and page2["prev_batch"] == 0 and "next_batch" not in page2, page2

    # Case-insensitive name match; the full room id matches too.
    assert _rooms(admin, search_term=f"{tag} BRAVO".upper())["total_rooms"] == 1
    by_id = _rooms(admin, search_term=room_ids[2])
    assert [r["room_id"] for r in by_id["rooms"]] == [room_ids[2]], by_id

    ordered = _rooms(admin, search_term=tag, order_by="joined_members")
    assert ordered["total_rooms"] == 3, ordered
    everything = _rooms(admin, limit=1000)
    assert set(room_ids) <= {r["room_id"] for r in everything["rooms"]}, everything


def test_list_rooms_bad_parameters(hs: Homeserver) -> None:
    admin = hs.register(admin=True)
    assert_error(
        admin.client.get(f"{ADMIN_V1}/rooms", params={"order_by": "nonsense"}), 400, "M_INVALID_PARAM"
    )
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms", params={"dir": "x"}), 400, "M_INVALID_PARAM")
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms", params={"search_term": ""}), 400, "M_INVALID_PARAM")
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms", params={"from": "-1"}), 400, "M_INVALID_PARAM")
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms", params={"limit": "ten"}), 400, "M_INVALID_PARAM")


def test_room_details_members_and_state(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user, name="Details", topic="About things", preset="public_chat")
    join_room(other_user, room_id)

    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}")
    assert resp.status == 200, resp.describe()
    details = resp.body
    assert set(details) >= ROOM_DETAIL_FIELDS, resp.describe()
    assert details["name"] == "Details" and details["topic"] == "About things", details
    assert details["joined_members"] == 2 and details["joined_local_members"] == 2, details
    assert details["creator"] == user.user_id and details["public"] is False, details
    assert details["tombstoned"] is False and details["replacement_room"] is None, details
    assert details["forgotten"] is False and details["joined_local_devices"] >= 2, details

    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/members")
    assert resp.status == 200, resp.describe()
    assert sorted(resp.body["members"]) == sorted([user.user_id, other_user.user_id]), resp.describe()
    assert resp.body["total"] == 2, resp.describe()

    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/state")
    assert resp.status == 200, resp.describe()
    types = {e["type"] for e in resp.body["state"]}
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= types, resp.describe()
    assert all("event_id" in e and "content" in e for e in resp.body["state"]), resp.describe()
    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/state", params={"type": "m.room.member"})
    assert resp.status == 200, resp.describe()
    assert {e["state_key"] for e in resp.body["state"]} == {user.user_id, other_user.user_id}, resp.describe()

    unknown = f"!doesnotexist{user.localpart}:{user.server_name}"
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms/{q(unknown)}"), 404, "M_NOT_FOUND")
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms/{q(unknown)}/members"), 404, "M_NOT_FOUND")
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms/{q(unknown)}/state"), 404, "M_NOT_FOUND")


def test_admin_reads_messages_and_context_without_membership(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(
        user,
        preset="private_chat",
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
    )
    event_ids = [send_text(user, room_id, f"secret {i}") for i in range(5)]
    # The admin is not in the room: the client API refuses, the admin API answers.
    assert_error(
        admin.client.get(f"{V3}/rooms/{q(room_id)}/messages", params={"dir": "b"}), 403, "M_FORBIDDEN"
    )

    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 3})
    assert resp.status == 200, resp.describe()
    chunk = resp.body["chunk"]
    assert [e["event_id"] for e in chunk] == event_ids[::-1][:3], resp.describe()
    assert isinstance(resp.body["start"], str) and isinstance(resp.body["end"], str), resp.describe()
    more = admin.client.get(
        f"{ADMIN_V1}/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 2, "from": resp.body["end"]}
    )
    assert more.status == 200, more.describe()
    assert [e["event_id"] for e in more.body["chunk"]] == [event_ids[1], event_ids[0]], more.describe()

    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/context/{q(event_ids[2])}", params={"limit": 2})
    assert resp.status == 200, resp.describe()
    assert resp.body["event"]["event_id"] == event_ids[2], resp.describe()
    assert [e["event_id"] for e in resp.body["events_before"]] == [event_ids[1]], resp.describe()
    assert [e["event_id"] for e in resp.body["events_after"]] == [event_ids[3]], resp.describe()
    assert any(e["type"] == "m.room.create" for e in resp.body["state"]), resp.describe()


def test_block_room_refuses_joins(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user, preset="public_chat")
    path = f"{ADMIN_V1}/rooms/{q(room_id)}/block"

    resp = admin.client.get(path)
    assert resp.status == 200 and resp.body == {"block": False}, resp.describe()
    resp = admin.client.put(path, {"block": True})
    assert resp.status == 200 and resp.body == {"block": True}, resp.describe()
    resp = admin.client.get(path)
    assert resp.status == 200 and resp.body == {"block": True, "user_id": admin.user_id}, resp.describe()

    # Synapse answers M_UNKNOWN (not M_FORBIDDEN) for a blocked room.
    assert_error(other_user.client.post(f"{V3}/join/{q(room_id)}", {}), 403, "M_UNKNOWN")

    resp = admin.client.put(path, {"block": False})
    assert resp.status == 200 and resp.body == {"block": False}, resp.describe()
    assert join_room(other_user, room_id) == room_id

    assert_error(admin.client.put(path, {}), 400, "M_MISSING_PARAM")
    assert_error(admin.client.put(path, {"block": "yes"}), 400, "M_BAD_JSON")
    # Rooms this server has never seen can be blocked in advance.
    unseen = f"!unseen{user.localpart}:elsewhere.example"
    resp = admin.client.put(f"{ADMIN_V1}/rooms/{q(unseen)}/block", {"block": True})
    assert resp.status == 200 and resp.body == {"block": True}, resp.describe()


def test_delete_room_v2_moves_members_to_a_new_room(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    alias_local = f"doomed{user.localpart}"
    room_id = create_room(user, preset="public_chat", room_alias_name=alias_local)
    join_room(other_user, room_id)
    send_text(user, room_id, "some history")

    assert_error(admin.client.delete(f"{ADMIN_V2}/rooms/{q(room_id)}"), 400, "M_NOT_JSON")
    assert_error(admin.client.delete(f"{ADMIN_V2}/rooms/{q(room_id)}", {"block": "yes"}), 400, "M_BAD_JSON")

    resp = admin.client.delete(
        f"{ADMIN_V2}/rooms/{q(room_id)}",
        {
            "new_room_user_id": admin.user_id,
            "room_name": "Moved",
            "message": "This room was closed.",
            "block": True,
            "purge": True,
        },
    )
    assert resp.status == 200, resp.describe()
    delete_id = resp.body["delete_id"]
    assert isinstance(delete_id, str) and delete_id, resp.describe()

    status = _wait_deleted(admin, delete_id)
    assert status["delete_id"] == delete_id and status["room_id"] == room_id, status
    result = status["shutdown_room"]
    assert set(result) == SHUTDOWN_FIELDS, status
    assert sorted(result["kicked_users"]) == sorted([user.user_id, other_user.user_id]), status
    assert result["failed_to_kick_users"] == [], status
    assert result["local_aliases"] == [f"#{alias_local}:{user.server_name}"], status
    new_room_id = result["new_room_id"]
    assert isinstance(new_room_id, str) and new_room_id != room_id, status

    by_room = admin.client.get(f"{ADMIN_V2}/rooms/{q(room_id)}/delete_status")
    assert by_room.status == 200, by_room.describe()
    assert [r["delete_id"] for r in by_room.body["results"]] == [delete_id], by_room.describe()

    # The members are now in the new room, which carries the message; the old room is gone.
    for member in (user, other_user):
        joined = member.client.get(f"{V3}/joined_rooms")
        assert joined.status == 200, joined.describe()
        assert new_room_id in joined.body["joined_rooms"], joined.describe()
        assert room_id not in joined.body["joined_rooms"], joined.describe()
    # Their clients keep syncing (the purged room is simply gone from their view).
    for member in (user, other_user):
        assert room_id not in sync_once(member).get("rooms", {}).get("join", {})
    texts = [e["content"].get("body") for e in get_messages(user, new_room_id, dir="b")["chunk"]]
    assert "This room was closed." in texts, texts
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}"), 404, "M_NOT_FOUND")
    # The alias now points at the new room; the blocked old room refuses joins.
    alias = admin.client.get(f"{V3}/directory/room/{q(f'#{alias_local}:{user.server_name}')}")
    assert alias.status == 200 and alias.body["room_id"] == new_room_id, alias.describe()
    assert_error(other_user.client.post(f"{V3}/join/{q(room_id)}", {}), 403, "M_UNKNOWN")

    assert_error(admin.client.get(f"{ADMIN_V2}/rooms/delete_status/nosuchid"), 404, "M_NOT_FOUND")
    never = f"!neverdeleted{user.localpart}:{user.server_name}"
    assert_error(admin.client.get(f"{ADMIN_V2}/rooms/{q(never)}/delete_status"), 404, "M_NOT_FOUND")


def test_delete_room_v1_is_synchronous(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user, preset="private_chat")
    resp = admin.client.delete(f"{ADMIN_V1}/rooms/{q(room_id)}", {})
    assert resp.status == 200, resp.describe()
    assert set(resp.body) >= SHUTDOWN_FIELDS, resp.describe()
    assert resp.body["kicked_users"] == [user.user_id] and resp.body["new_room_id"] is None, resp.describe()
    joined = user.client.get(f"{V3}/joined_rooms")
    assert room_id not in joined.body["joined_rooms"], joined.describe()
    assert_error(admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}"), 404, "M_NOT_FOUND")


def test_delete_unknown_room(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    empty = {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None}
    unknown = f"!unknown{user.localpart}:{user.server_name}"
    resp = admin.client.delete(f"{ADMIN_V1}/rooms/{q(unknown)}", {})
    assert resp.status == 200 and resp.body == empty, resp.describe()
    resp = admin.client.delete(f"{ADMIN_V2}/rooms/{q(unknown + 'x')}", {"block": True})
    assert resp.status == 200, resp.describe()
    status = _wait_deleted(admin, resp.body["delete_id"])
    assert status["shutdown_room"] == empty, status
    blocked = admin.client.get(f"{ADMIN_V1}/rooms/{q(unknown + 'x')}/block")
    assert blocked.status == 200 and blocked.body["block"] is True, blocked.describe()
    assert_error(admin.client.delete(f"{ADMIN_V2}/rooms/not-a-room", {}), 400)


def test_delete_without_purge_keeps_the_room_data(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user, preset="private_chat", name="Kept")
    resp = admin.client.delete(f"{ADMIN_V2}/rooms/{q(room_id)}", {"purge": False})
    assert resp.status == 200, resp.describe()
    status = _wait_deleted(admin, resp.body["delete_id"])
    assert status["shutdown_room"]["kicked_users"] == [user.user_id], status
    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}")
    assert resp.status == 200 and resp.body["joined_members"] == 0, resp.describe()


def test_purge_history_keeps_state_and_the_latest_event(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user, preset="private_chat", name="Purged")
    old = [send_text(user, room_id, f"old {i}") for i in range(4)]
    cut = send_text(user, room_id, "cut here")
    newer = send_text(user, room_id, "newer")

    assert_error(admin.client.post(f"{ADMIN_V1}/purge_history/{q(room_id)}", {}), 400, "M_BAD_JSON")
    assert_error(
        admin.client.post(f"{ADMIN_V1}/purge_history/{q(room_id)}", {"purge_up_to_ts": "soon"}),
        400,
        "M_BAD_JSON",
    )
    resp = admin.client.post(
        f"{ADMIN_V1}/purge_history/{q(room_id)}", {"purge_up_to_event_id": cut, "delete_local_events": True}
    )
    assert resp.status == 200, resp.describe()
    purge_id = resp.body["purge_id"]
    status = poll(
        lambda: admin.client.get(f"{ADMIN_V1}/purge_history_status/{q(purge_id)}"),
        lambda r: r.status != 200 or r.body.get("status") != "active",
        f"purge {purge_id}",
    )
    assert status.status == 200 and status.body == {"status": "complete"}, status.describe()

    chunk = get_messages(user, room_id, dir="b", limit=50)["chunk"]
    ids_left = {e["event_id"] for e in chunk}
    assert not ids_left & set(old), chunk
    assert {cut, newer} <= ids_left, chunk
    # The state survives: the room still has its name and the member can still talk.
    types = {e["type"] for e in chunk}
    assert {"m.room.create", "m.room.name"} <= types or _has_state(admin, room_id), chunk
    assert send_text(user, room_id, "after purge")
    assert room_id in sync_once(user)["rooms"]["join"]

    assert_error(admin.client.get(f"{ADMIN_V1}/purge_history_status/nosuchpurge"), 404, "M_NOT_FOUND")


def _has_state(admin: User, room_id: str) -> bool:
    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/state")
    return resp.status == 200 and {"m.room.create", "m.room.name"} <= {e["type"] for e in resp.body["state"]}


def test_make_room_admin(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user, preset="private_chat")
    resp = admin.client.post(f"{ADMIN_V1}/rooms/{q(room_id)}/make_room_admin", {})
    assert resp.status == 200 and resp.body == {}, resp.describe()
    state = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/state", params={"type": "m.room.power_levels"})
    users = state.body["state"][0]["content"]["users"]
    # The admin gets the top level a local member has (in room version 12 the creator's own
    # power is implicit, so it may be absent from `users`).
    assert users[admin.user_id] == 100, state.describe()
    assert users.get(user.user_id, 100) == 100, state.describe()
    # The room is invite-only, so the admin has been invited and can now join.
    assert join_room(admin, room_id) == room_id


def test_join_user_to_room(hs: Homeserver, user: User, other_user: User) -> None:
    admin = hs.register(admin=True)
    public_room = create_room(user, preset="public_chat")
    resp = admin.client.post(f"{ADMIN_V1}/join/{q(public_room)}", {"user_id": other_user.user_id})
    assert resp.status == 200 and resp.body == {"room_id": public_room}, resp.describe()
    members = admin.client.get(f"{ADMIN_V1}/rooms/{q(public_room)}/members")
    assert other_user.user_id in members.body["members"], members.describe()

    # A private room: the admin must be in it (to invite the user first).
    private_room = create_room(user, preset="private_chat")
    third = hs.register()
    assert_error(admin.client.post(f"{ADMIN_V1}/join/{q(private_room)}", {"user_id": third.user_id}), 403)
    invite_user(user, private_room, admin.user_id)
    join_room(admin, private_room)
    resp = admin.client.post(f"{ADMIN_V1}/join/{q(private_room)}", {"user_id": third.user_id})
    assert resp.status == 200, resp.describe()

    assert_error(admin.client.post(f"{ADMIN_V1}/join/{q(public_room)}", {}), 400, "M_MISSING_PARAM")
    remote = "@someone:remote.example.org"
    assert_error(admin.client.post(f"{ADMIN_V1}/join/{q(public_room)}", {"user_id": remote}), 400)


def test_forward_extremities(hs: Homeserver, user: User) -> None:
    admin = hs.register(admin=True)
    room_id = create_room(user)
    last = send_text(user, room_id, "tip")
    resp = admin.client.get(f"{ADMIN_V1}/rooms/{q(room_id)}/forward_extremities")
    assert resp.status == 200, resp.describe()
    assert resp.body["count"] == 1 and len(resp.body["results"]) == 1, resp.describe()
    result = resp.body["results"][0]
    assert result["event_id"] == last and isinstance(result["depth"], int), resp.describe()
    assert isinstance(result["received_ts"], int) and "state_group" in result, resp.describe()
    # With one extremity there is nothing to delete.
    resp = admin.client.delete(f"{ADMIN_V1}/rooms/{q(room_id)}/forward_extremities")
    assert resp.status == 200 and resp.body == {"deleted": 0}, resp.describe()
