"""Event types, memberships and join rules the event code gives meaning to."""

from __future__ import annotations

from typing import Final

CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
POWER_LEVELS: Final = "m.room.power_levels"
JOIN_RULES: Final = "m.room.join_rules"
THIRD_PARTY_INVITE: Final = "m.room.third_party_invite"
REDACTION: Final = "m.room.redaction"
ALIASES: Final = "m.room.aliases"
HISTORY_VISIBILITY: Final = "m.room.history_visibility"

JOIN: Final = "join"
INVITE: Final = "invite"
LEAVE: Final = "leave"
BAN: Final = "ban"
KNOCK: Final = "knock"

PUBLIC: Final = "public"
KNOCK_RESTRICTED: Final = "knock_restricted"
RESTRICTED: Final = "restricted"
PRIVATE: Final = "private"

# content.join_authorised_via_users_server on restricted joins (room v8+).
AUTHORISING_USER: Final = "join_authorised_via_users_server"
