"""The push-gateway API request bodies (spec: push-gateway API, `POST /_matrix/push/v1/notify`),
built as Synapse builds them, since apps rely on its exact shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.state.current import RoomSnapshot
from homeserver.storage.stores.pushers import Pusher

ENCRYPTED = "m.room.encrypted"


def tweaks_of(actions: list[Any]) -> dict[str, Any]:
    """`set_tweak` actions as a mapping (a tweak without a value is `true`, as the spec says)."""
    tweaks: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            tweaks[action["set_tweak"]] = action.get("value", True)
    return tweaks


def priority(event_type: str, tweaks: Mapping[str, Any]) -> str:
    """high for encrypted events (we cannot tell what they say) or a highlight/sound tweak."""
    if event_type == ENCRYPTED or tweaks.get("highlight") or tweaks.get("sound"):
        return "high"
    return "low"


def device(pusher: Pusher, tweaks: Mapping[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "app_id": pusher.app_id,
        "pushkey": pusher.pushkey,
        "pushkey_ts": pusher.created_ts // 1000,  # seconds, as Synapse
        "data": {k: v for k, v in pusher.data.items() if k != "url"},
    }
    if tweaks is not None:
        entry["tweaks"] = dict(tweaks)
    return entry


def display_name(snapshot: RoomSnapshot | None, user_id: str) -> str | None:
    if snapshot is None:
        return None
    name = snapshot.content_of(c.MEMBER, user_id).get("displayname")
    return name if isinstance(name, str) and name else None


def room_name(snapshot: RoomSnapshot | None, user_id: str, *, single_member: bool = False) -> str | None:
    """The room's human name as Synapse computes it (`calculate_room_name`): m.room.name, else the
    canonical alias, else the other members ("Alice and Carol", "Alice and 3 others"). A room with
    one other person, or an invite from a known member, is named only with `single_member`
    ("Alice", "Invite from Alice": emails); pushes leave it out as Synapse's pusher does: the
    sender's name already says it, and gateways would otherwise render "Alice in Alice"."""
    if snapshot is None:
        return None
    name = snapshot.content_of("m.room.name").get("name")
    if isinstance(name, str) and name:
        return name
    alias = snapshot.content_of("m.room.canonical_alias").get("alias")
    if isinstance(alias, str) and alias:
        return alias
    own = snapshot.get(c.MEMBER, user_id)
    if own is not None and own.content.get("membership") == c.INVITE:
        inviter = snapshot.get(c.MEMBER, own.sender)
        if inviter is None:
            return "Room Invite"
        return f"Invite from {display_name(snapshot, own.sender) or own.sender}" if single_member else None
    members = [
        e
        for (type_, _key), e in snapshot.state.items()
        if type_ == c.MEMBER and e.content.get("membership") in (c.JOIN, c.INVITE)
    ]
    members.sort(key=lambda e: e.origin_server_ts)  # in the order they came, as Synapse
    others = [e for e in members if e.state_key != user_id]
    if not others or (len(others) == 1 and not single_member):
        return None
    names = [display_name(snapshot, str(e.state_key)) or str(e.state_key) for e in others]
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} and {len(names) - 1} others"


def event_notification(
    pusher: Pusher,
    event: Event,
    actions: list[Any],
    badge: int,
    snapshot: RoomSnapshot | None,
    *,
    include_content: bool,
) -> dict[str, Any]:
    tweaks = tweaks_of(actions)
    prio = priority(event.type, tweaks)
    if pusher.data.get("format") == "event_id_only":
        # Only ids and counts: the app fetches the event itself (no content, no tweaks).
        return {
            "notification": {
                "event_id": event.event_id,
                "room_id": event.room_id,
                "counts": {"unread": badge},
                "prio": prio,
                "devices": [device(pusher, None)],
            }
        }
    notification: dict[str, Any] = {
        "id": event.event_id,  # the spec's earlier name, still read by old gateways
        "event_id": event.event_id,
        "room_id": event.room_id,
        "type": event.type,
        "sender": event.sender,
        "prio": prio,
        "counts": {"unread": badge},
        "devices": [device(pusher, tweaks)],
    }
    if event.type == c.MEMBER and event.state_key is not None:
        notification["membership"] = event.content.get("membership")
        notification["user_is_target"] = event.state_key == pusher.user_id
    if include_content and event.content:
        notification["content"] = dict(event.content)
    sender_name = display_name(snapshot, event.sender)
    if sender_name:
        notification["sender_display_name"] = sender_name
    name = room_name(snapshot, pusher.user_id)
    if name:
        notification["room_name"] = name
    alias = snapshot.content_of("m.room.canonical_alias").get("alias") if snapshot is not None else None
    if isinstance(alias, str) and alias:
        notification["room_alias"] = alias
    return {"notification": notification}


def badge_notification(pusher: Pusher, badge: int) -> dict[str, Any]:
    """Counts only, after the user read: the app updates its badge (Synapse's `_send_badge`)."""
    return {
        "notification": {
            "id": "",
            "type": None,
            "sender": "",
            "prio": "low",
            "counts": {"unread": badge},
            "devices": [device(pusher, None)],
        }
    }
