"""GDPR erasure (`POST /account/deactivate` with `erase: true`): Synapse serves an erased user's
events redacted to users who were not joined when they were sent, and unchanged to those who were
(synapse/visibility.py). Behaves the same on both servers."""

from __future__ import annotations

from typing import Any

from .client import V3
from .harness import Homeserver, User, create_room, join_room, room_path, send_text, with_uia


def _messages(user: User, room_id: str) -> dict[str, dict[str, Any]]:
    resp = user.client.get(room_path(room_id, "messages"), params={"dir": "b", "limit": "50"})
    assert resp.status == 200, resp.describe()
    return {e["event_id"]: e for e in resp.body["chunk"]}


def test_erased_users_messages_are_redacted_for_later_members(hs: Homeserver) -> None:
    owner, leaver, newcomer = hs.register(), hs.register(), hs.register()
    room_id = create_room(owner, preset="public_chat")
    join_room(leaver, room_id)
    said = send_text(leaver, room_id, "erase me please")
    resp = with_uia(
        leaver,
        "POST",
        f"{V3}/account/deactivate",
        {"erase": True},
        "account_deactivation.yaml",
        "/account/deactivate",
    )
    assert resp.status == 200, resp.describe()

    join_room(newcomer, room_id)
    assert _messages(owner, room_id)[said]["content"]["body"] == "erase me please"
    seen = _messages(newcomer, room_id)[said]
    assert seen["content"] == {}
    event = newcomer.client.get(room_path(room_id, "event", said))
    assert event.status == 200 and event.body["content"] == {}


def test_deactivation_without_erase_keeps_messages(hs: Homeserver) -> None:
    owner, leaver, newcomer = hs.register(), hs.register(), hs.register()
    room_id = create_room(owner, preset="public_chat")
    join_room(leaver, room_id)
    said = send_text(leaver, room_id, "keep me")
    resp = with_uia(
        leaver, "POST", f"{V3}/account/deactivate", {}, "account_deactivation.yaml", "/account/deactivate"
    )
    assert resp.status == 200, resp.describe()
    join_room(newcomer, room_id)
    assert _messages(newcomer, room_id)[said]["content"]["body"] == "keep me"
