"""createRoom presets and Synapse's default power levels, as data."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "private_chat": {
        "join_rule": "invite",
        "history_visibility": "shared",
        "guest_access": "can_join",
        "invitees_are_admins": False,
    },
    "trusted_private_chat": {
        "join_rule": "invite",
        "history_visibility": "shared",
        "guest_access": "can_join",
        "invitees_are_admins": True,
    },
    "public_chat": {
        "join_rule": "public",
        "history_visibility": "shared",
        "guest_access": "forbidden",
        "invitees_are_admins": False,
    },
}


# Room v12+: the tombstone level must be above state_default (create_room.yaml); 150 also puts
# upgrades above ordinary admins (100), leaving them to the creators, who have infinite power.
TOMBSTONE_LEVEL_V12 = 150


def default_power_levels(
    creator: str, invitees: list[str], invitees_are_admins: bool, *, privileged_creators: bool = False
) -> dict[str, Any]:
    """Synapse's default m.room.power_levels. With `privileged_creators` (room v12+) the creator is
    not listed (creators have infinite power and may not appear in `users`; trusted_private_chat
    invitees become additional creators instead) and the tombstone level is raised."""
    users = {} if privileged_creators else {creator: 100}
    if invitees_are_admins and not privileged_creators:
        users.update({user: 100 for user in invitees})
    content: dict[str, Any] = {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "historical": 100,
        "notifications": {"room": 50},
    }
    if privileged_creators:
        content["events"]["m.room.tombstone"] = TOMBSTONE_LEVEL_V12
    return content


# State included (stripped) in invites and knocks so the invitee can show the room.
STRIPPED_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)
