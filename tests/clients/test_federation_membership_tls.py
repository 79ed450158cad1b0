"""Membership across two homeserver processes federating over TLS (the harness of
test_federation_tls.py): a user of A creates a room and invites a user of B (invite v2, countersigned
by B), who sees the invite in /sync and joins (make_join / send_join v2 against A; B stores the room
it learns); both servers' /sync show the membership. Also: joining a public room by id with
`server_name`, and rejecting an invite (make_leave / send_leave). Messages after the join need the
federation sender and the inbound transaction handler, tested where those live."""

from __future__ import annotations

from typing import Any

from synapse_compat_tests.client import MatrixClient, q, register_user

from .test_federation_tls import Fed, pair  # noqa: F401  (the module-scoped two-server fixture)

V3 = "/_matrix/client/v3"


def _sync_until(client: MatrixClient, since: str | None, done: Any, attempts: int = 20) -> dict[str, Any]:
    """Long-poll /sync until `done(response)`; bounded, no sleeps."""
    for _ in range(attempts):
        params = {"timeout": "3000"} | ({"since": since} if since else {})
        resp = client.get(f"{V3}/sync", params=params)
        assert resp.status == 200, resp.describe()
        if done(resp.body):
            return dict(resp.body)
        since = resp.body["next_batch"]
    raise AssertionError("the expected /sync response never came")


def _membership_in(sync: dict[str, Any], room_id: str, user_id: str) -> str | None:
    room = sync["rooms"]["join"].get(room_id)
    if room is None:
        return None
    found = None
    for section in ("state", "timeline"):
        for event in room[section]["events"]:
            if event["type"] == "m.room.member" and event["state_key"] == user_id:
                found = event["content"]["membership"]
    return found


def _users(fed: Fed, localpart: str) -> tuple[str, MatrixClient]:
    user_id, token, _ = register_user(fed.client, fed.server.shared_secret, localpart)
    return user_id, fed.client.with_token(token)


def test_invite_then_join_across_servers(pair: tuple[Fed, Fed]) -> None:  # noqa: F811
    a, b = pair
    alice, on_a = _users(a, "alice_m")
    bob, on_b = _users(b, "bob_m")
    since_a = on_a.get(f"{V3}/sync").body["next_batch"]
    since_b = on_b.get(f"{V3}/sync").body["next_batch"]

    resp = on_a.post(f"{V3}/createRoom", {"preset": "private_chat", "name": "Across"})
    assert resp.status == 200, resp.describe()
    room_id = resp.body["room_id"]
    resp = on_a.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": bob})
    assert resp.status == 200, resp.describe()

    sync = _sync_until(on_b, since_b, lambda s: room_id in s["rooms"]["invite"])
    invite_state = {e["type"]: e for e in sync["rooms"]["invite"][room_id]["invite_state"]["events"]}
    assert invite_state["m.room.name"]["content"] == {"name": "Across"}
    assert invite_state["m.room.member"]["sender"] == alice
    since_b = sync["next_batch"]

    resp = on_b.post(f"{V3}/join/{q(room_id)}", {})
    assert (resp.status, resp.body) == (200, {"room_id": room_id}), resp.describe()

    # B: the room is joined, with its state (alice joined, bob joined)
    sync = _sync_until(on_b, since_b, lambda s: room_id in s["rooms"]["join"])
    assert _membership_in(sync, room_id, bob) == "join"
    assert _membership_in(sync, room_id, alice) == "join"
    room = sync["rooms"]["join"][room_id]
    assert any(e["type"] == "m.room.name" for e in room["state"]["events"] + room["timeline"]["events"])
    # A: bob's join arrived through send_join
    sync = _sync_until(on_a, since_a, lambda s: _membership_in(s, room_id, bob) == "join")
    resp = on_a.get(f"{V3}/rooms/{q(room_id)}/joined_members")
    assert set(resp.body["joined"]) == {alice, bob}
    resp = on_b.get(f"{V3}/rooms/{q(room_id)}/joined_members")
    assert set(resp.body["joined"]) == {alice, bob}


def test_join_public_room_by_server_name(pair: tuple[Fed, Fed]) -> None:  # noqa: F811
    a, b = pair
    _, on_a = _users(a, "ann_m")
    carl, on_b = _users(b, "carl_m")
    resp = on_a.post(f"{V3}/createRoom", {"preset": "public_chat"})
    room_id = resp.body["room_id"]
    resp = on_b.post(f"{V3}/join/{q(room_id)}", {}, params={"server_name": a.name})
    assert (resp.status, resp.body) == (200, {"room_id": room_id}), resp.describe()
    resp = on_a.get(f"{V3}/rooms/{q(room_id)}/joined_members")
    assert carl in resp.body["joined"]


def test_reject_invite_across_servers(pair: tuple[Fed, Fed]) -> None:  # noqa: F811
    a, b = pair
    _, on_a = _users(a, "amy_m")
    dora, on_b = _users(b, "dora_m")
    resp = on_a.post(f"{V3}/createRoom", {"preset": "private_chat"})
    room_id = resp.body["room_id"]
    assert on_a.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": dora}).status == 200
    since = _sync_until(on_b, None, lambda s: room_id in s["rooms"]["invite"])["next_batch"]
    resp = on_b.post(f"{V3}/rooms/{q(room_id)}/leave", {})
    assert resp.status == 200, resp.describe()
    _sync_until(on_b, since, lambda s: room_id in s["rooms"]["leave"])
    resp = on_a.get(f"{V3}/rooms/{q(room_id)}/state/m.room.member/{q(dora)}")
    assert (resp.status, resp.body["membership"]) == (200, "leave")
