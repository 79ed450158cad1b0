"""Room versions as data.

Each version is one frozen `RoomVersion` whose flags select behaviour in the event code (ids, redaction,
auth rules, validation). Adding a version means adding an entry here; code branches on flags, never on
the identifier string. The flag names follow Synapse's `RoomVersion` where a concept exists there.

Versions 1 and 2 (server-generated `$local:domain` event ids, `[id, hashes]` prev_events and the
redaction auth rule) are not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from homeserver.events import constants as c


class EventIdFormat(Enum):
    # v3: "$" + standard unpadded base64 of the reference hash.
    V3 = 3
    # v4+: "$" + URL-safe unpadded base64 of the reference hash.
    V4 = 4


class StateResAlgorithm(Enum):
    V2 = "v2"
    # v12: iterative auth checks start from an empty state map and the full conflicted set includes the
    # conflicted state subgraph.
    V2_1 = "v2.1"


@dataclass(frozen=True, slots=True, eq=False)
class RedactionRules:
    """What the redaction algorithm keeps: top-level keys and, per event type, content keys."""

    top_level: frozenset[str]
    # event type -> content keys kept; None keeps the whole content (v11 m.room.create).
    content: MappingProxyType[str, frozenset[str] | None]
    # v11: m.room.member keeps content.third_party_invite.signed.
    keep_third_party_invite_signed: bool = False


_TOP_LEVEL_V1 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 (MSC2176) stopped protecting origin, membership and prev_state.
_TOP_LEVEL_V11 = _TOP_LEVEL_V1 - {"origin", "membership", "prev_state"}

_PL_KEYS_V1 = frozenset(
    {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
)


def _content_rules(
    overrides: dict[str, frozenset[str] | None] | None = None,
) -> MappingProxyType[str, frozenset[str] | None]:
    rules: dict[str, frozenset[str] | None] = {
        c.MEMBER: frozenset({"membership"}),
        c.CREATE: frozenset({"creator"}),
        c.JOIN_RULES: frozenset({"join_rule"}),
        c.POWER_LEVELS: _PL_KEYS_V1,
        c.HISTORY_VISIBILITY: frozenset({"history_visibility"}),
    }
    rules.update(overrides or {})
    return MappingProxyType(rules)


_JOIN_RULES_V8 = frozenset({"join_rule", "allow"})
_MEMBER_V9 = frozenset({"membership", c.AUTHORISING_USER})

# v1-v5: m.room.aliases keeps `aliases`.
REDACTION_V1 = RedactionRules(_TOP_LEVEL_V1, _content_rules({c.ALIASES: frozenset({"aliases"})}))
# v6 (MSC2432): m.room.aliases loses its special case.
REDACTION_V6 = RedactionRules(_TOP_LEVEL_V1, _content_rules())
# v8 (MSC3083): join rules keep `allow`.
REDACTION_V8 = RedactionRules(_TOP_LEVEL_V1, _content_rules({c.JOIN_RULES: _JOIN_RULES_V8}))
# v9 (MSC3375): member events keep join_authorised_via_users_server.
REDACTION_V9 = RedactionRules(
    _TOP_LEVEL_V1, _content_rules({c.JOIN_RULES: _JOIN_RULES_V8, c.MEMBER: _MEMBER_V9})
)
# v11 (MSC2176, MSC3821, MSC3989): see rooms/v11.md "Redactions".
REDACTION_V11 = RedactionRules(
    _TOP_LEVEL_V11,
    _content_rules(
        {
            c.JOIN_RULES: _JOIN_RULES_V8,
            c.MEMBER: _MEMBER_V9,
            c.CREATE: None,
            c.POWER_LEVELS: _PL_KEYS_V1 | {"invite"},
            c.REDACTION: frozenset({"redacts"}),
        }
    ),
    keep_third_party_invite_signed=True,
)


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    disposition: str
    event_id_format: EventIdFormat
    state_res: StateResAlgorithm
    redaction: RedactionRules
    # v5+: a signing key's valid_until_ts must cover the event's origin_server_ts.
    enforce_key_validity: bool
    # v1-v5: auth rule for m.room.aliases (state_key must be the sender's domain).
    special_case_aliases_auth: bool
    # v6+: events must be strictly canonical JSON (no floats, ints within +-(2**53-1)).
    strict_canonical_json: bool
    # v6+: power-level changes to `notifications` are checked like `events`.
    limit_notifications_power_levels: bool
    # v7+: `knock` membership and join rule.
    knock_join_rule: bool
    # v8+: `restricted` join rule with join_authorised_via_users_server.
    restricted_join_rule: bool
    # v10+: `knock_restricted` join rule.
    knock_restricted_join_rule: bool
    # v10+: power levels must be integers (no "50" strings).
    enforce_int_power_levels: bool
    # v11+: no content.creator on m.room.create; the creator is the create event's sender.
    implicit_room_creator: bool
    # v11+: m.room.redaction carries `redacts` in content instead of at the top level.
    redacts_in_content: bool
    # v12+: room id is the create event's id with a `!` sigil; create events have no room_id and
    # are not listed in auth_events.
    room_ids_as_hashes: bool = False
    # v12+: creators (create sender + content.additional_creators) have infinite power.
    privileged_creators: bool = False

    @property
    def max_depth(self) -> int:
        # v6 reduced the depth limit to the canonical JSON integer range.
        return 2**53 - 1 if self.strict_canonical_json else 2**63 - 1

    @property
    def auth_events_include_create(self) -> bool:
        return not self.room_ids_as_hashes


STABLE: Final = "stable"

V3 = RoomVersion(
    identifier="3",
    disposition=STABLE,
    event_id_format=EventIdFormat.V3,
    state_res=StateResAlgorithm.V2,
    redaction=REDACTION_V1,
    enforce_key_validity=False,
    special_case_aliases_auth=True,
    strict_canonical_json=False,
    limit_notifications_power_levels=False,
    knock_join_rule=False,
    restricted_join_rule=False,
    knock_restricted_join_rule=False,
    enforce_int_power_levels=False,
    implicit_room_creator=False,
    redacts_in_content=False,
)


def _derive(base: RoomVersion, identifier: str, **changes: object) -> RoomVersion:
    """A version that differs from `base` only by `changes` (mirrors how the spec defines them)."""
    values = {name: getattr(base, name) for name in RoomVersion.__dataclass_fields__}
    values.update(changes, identifier=identifier)
    return RoomVersion(**values)


V4 = _derive(V3, "4", event_id_format=EventIdFormat.V4)
V5 = _derive(V4, "5", enforce_key_validity=True)
V6 = _derive(
    V5,
    "6",
    redaction=REDACTION_V6,
    special_case_aliases_auth=False,
    strict_canonical_json=True,
    limit_notifications_power_levels=True,
)
V7 = _derive(V6, "7", knock_join_rule=True)
V8 = _derive(V7, "8", restricted_join_rule=True, redaction=REDACTION_V8)
V9 = _derive(V8, "9", redaction=REDACTION_V9)
V10 = _derive(V9, "10", knock_restricted_join_rule=True, enforce_int_power_levels=True)
V11 = _derive(V10, "11", redaction=REDACTION_V11, implicit_room_creator=True, redacts_in_content=True)
V12 = _derive(V11, "12", state_res=StateResAlgorithm.V2_1, room_ids_as_hashes=True, privileged_creators=True)

KNOWN_ROOM_VERSIONS: Final[dict[str, RoomVersion]] = {
    v.identifier: v for v in (V3, V4, V5, V6, V7, V8, V9, V10, V11, V12)
}
DEFAULT_ROOM_VERSION: Final = "11"
# Advertised as "stable" in /capabilities (m.room_versions.available).
STABLE_ROOM_VERSIONS: Final[tuple[str, ...]] = tuple(
    ident for ident, v in KNOWN_ROOM_VERSIONS.items() if v.disposition == STABLE
)


def get_room_version(identifier: str) -> RoomVersion | None:
    return KNOWN_ROOM_VERSIONS.get(identifier)
