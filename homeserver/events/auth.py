"""Event authorisation rules (rooms/v3..v12.md "Authorisation rules"), pure and table-testable.

Two entry points, matching the two inputs the spec checks against:

- `check_auth_events(room_version, event, auth_events)`: rule "Considering the event's auth_events"
  (duplicates, unexpected entries, rejected entries, wrong room, missing create). It returns the auth
  events as a state map for the next call.
- `check_auth_rules(room_version, event, auth_state)`: every other rule, against a state map: the
  event's auth events, the state before the event, or the current state (soft-fail check).

Not checked here (they need keys): that the event is signed by the sender's server and, for restricted
joins, by the authorising user's server (rule "join_authorised_via_users_server ... validly signed");
crypto/event_signing.required_signers lists the servers to verify.

Power levels: values may be strings in rooms before v10 ("stringy" levels); they are parsed strictly per
the spec (optional whitespace and sign, ASCII digits). An unparsable level that the rules need rejects
the event, as in Synapse (where int() raises).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

from homeserver.core.errors import MatrixError
from homeserver.core.ids import is_valid_user_id
from homeserver.crypto.signing import SignatureError, verify_ed25519_signature
from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

StateKey = tuple[str, str]
AuthState = Mapping[StateKey, Event]

CREATE_KEY: Final[StateKey] = (c.CREATE, "")
POWER_LEVELS_KEY: Final[StateKey] = (c.POWER_LEVELS, "")
JOIN_RULES_KEY: Final[StateKey] = (c.JOIN_RULES, "")

# Room v12 creators have "infinite" power: one more than the largest valid (canonical JSON) level.
CREATOR_POWER_LEVEL: Final = 2**53

# Defaults of the named levels (m.room.power_levels schema).
NAMED_LEVEL_DEFAULTS: Final[Mapping[str, int]] = {
    "users_default": 0,
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
}

_STRINGY_LEVEL = re.compile(r"\s*[+-]?[0-9]+\s*")


class AuthError(MatrixError):
    """The event is not allowed by the auth rules."""

    def __init__(self, reason: str) -> None:
        super().__init__(403, "M_FORBIDDEN", reason)
        self.reason = reason


def _domain(identifier: str) -> str | None:
    _, sep, domain = identifier.partition(":")
    return domain if sep else None


def _looks_like_user_id(value: Any) -> bool:
    # Keys of `users` are checked as laxly as Synapse does (sigil + colon): being stricter than the
    # dominant implementation would fork room state over odd but historical user ids.
    return isinstance(value, str) and value.startswith("@") and ":" in value


# -- power levels --------------------------------------------------------------------------------


def parse_power_level(value: Any) -> int | None:
    """An integer level from an int or (legacy rooms) a string like " +100 "; None if neither."""
    if type(value) is int:
        return value
    if isinstance(value, str) and _STRINGY_LEVEL.fullmatch(value):
        return int(value)
    return None


def _level(value: Any, what: str) -> int:
    level = parse_power_level(value)
    if level is None:
        raise AuthError(f"Invalid power level for {what}: {value!r}")
    return level


def get_power_levels_content(auth_state: AuthState) -> Mapping[str, Any] | None:
    """Content of the m.room.power_levels event, or None when the room has none."""
    event = auth_state.get(POWER_LEVELS_KEY)
    return event.content if event is not None else None


def get_named_level(name: str, power_levels_content: Mapping[str, Any] | None) -> int:
    """`users_default`, `events_default`, `state_default`, `ban`, `kick`, `redact` or `invite`."""
    default = NAMED_LEVEL_DEFAULTS[name]
    if not power_levels_content:
        return default
    value = power_levels_content.get(name)
    return default if value is None else _level(value, name)


def required_power_level(
    event_type: str, state_key_is_not_none: bool, power_levels_content: Mapping[str, Any] | None
) -> int:
    """The spec's "required power level" to send an event of this type."""
    if power_levels_content:
        events = power_levels_content.get("events")
        if events is not None:
            if not isinstance(events, Mapping):
                raise AuthError("Invalid 'events' in power levels")
            value = events.get(event_type)
            if value is not None:
                return _level(value, event_type)
    return get_named_level(
        "state_default" if state_key_is_not_none else "events_default", power_levels_content
    )


def room_creator(create_event: Event) -> str | None:
    """The room creator: the create event's sender from v11, content.creator before."""
    if create_event.room_version.implicit_room_creator:
        return create_event.sender
    creator = create_event.content.get("creator")
    return creator if isinstance(creator, str) else None


def room_creators(create_event: Event) -> frozenset[str]:
    """v12 creators: the create sender plus content.additional_creators; earlier, the one creator."""
    creator = room_creator(create_event)
    creators = {creator} if creator else set()
    if create_event.room_version.privileged_creators:
        extra = create_event.content.get("additional_creators")
        if isinstance(extra, list):
            creators.update(u for u in extra if isinstance(u, str))
    return frozenset(creators)


def user_power_level(user_id: str, auth_state: AuthState) -> int:
    """A user's power level given the create and power levels events in `auth_state`."""
    create = auth_state.get(CREATE_KEY)
    if create is not None and create.room_version.privileged_creators and user_id in room_creators(create):
        return CREATOR_POWER_LEVEL
    content = get_power_levels_content(auth_state)
    if content is not None:
        users = content.get("users")
        if users is not None and not isinstance(users, Mapping):
            raise AuthError("Invalid 'users' in power levels")
        value = users.get(user_id) if users else None
        if value is not None:
            return _level(value, user_id)
        return get_named_level("users_default", content)
    # No power levels: the creator has 100, everyone else 0 (v12 creators were handled above).
    if create is not None and not create.room_version.privileged_creators and user_id == room_creator(create):
        return 100
    return 0


# -- small state lookups -------------------------------------------------------------------------


def get_membership(user_id: str, auth_state: AuthState) -> str | None:
    """The user's membership in `auth_state` (None when there is no member event)."""
    event = auth_state.get((c.MEMBER, user_id))
    return event.membership if event is not None else None


def get_join_rule(auth_state: AuthState) -> str | None:
    """The join rule; `invite` when there is no join rules event or it has no join_rule."""
    event = auth_state.get(JOIN_RULES_KEY)
    if event is None:
        return c.INVITE
    value = event.content.get("join_rule", c.INVITE)
    return value if isinstance(value, str) else None


def can_send(user_id: str, event_type: str, state_key: str | None, auth_state: AuthState) -> bool:
    """Whether `user_id` may send a non-membership event of this type now (rules 5, 7 and 8).

    A cheap pre-check for services; the full rules still run when the event is persisted.
    """
    if get_membership(user_id, auth_state) != c.JOIN:
        return False
    if state_key is not None and state_key.startswith("@") and state_key != user_id:
        return False
    try:
        required = required_power_level(
            event_type, state_key is not None, get_power_levels_content(auth_state)
        )
        return user_power_level(user_id, auth_state) >= required
    except AuthError:
        return False


def can_redact(redaction_sender: str, original_sender: str, auth_state: AuthState) -> bool:
    """Whether a redaction is applied (spec "Handling redactions"): its sender has the redact level,
    or is on the same server as the redacted event's sender."""
    if _domain(redaction_sender) == _domain(original_sender):
        return True
    try:
        redact_level = get_named_level("redact", get_power_levels_content(auth_state))
        return user_power_level(redaction_sender, auth_state) >= redact_level
    except AuthError:
        return False


# -- auth events selection -----------------------------------------------------------------------


def auth_types_for_event(
    room_version: RoomVersion,
    *,
    type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """The state entries an event's auth_events are selected from ("Auth events selection")."""
    if type == c.CREATE:
        return []
    selected: list[StateKey] = []
    if room_version.auth_events_include_create:
        selected.append(CREATE_KEY)
    selected.append(POWER_LEVELS_KEY)
    selected.append((c.MEMBER, sender))
    if type == c.MEMBER:
        membership = content.get("membership")
        if state_key is not None:
            selected.append((c.MEMBER, state_key))
        if membership in (c.JOIN, c.INVITE, c.KNOCK):
            selected.append(JOIN_RULES_KEY)
        if membership == c.INVITE:
            tpi = content.get("third_party_invite")
            signed = tpi.get("signed") if isinstance(tpi, Mapping) else None
            token = signed.get("token") if isinstance(signed, Mapping) else None
            if isinstance(token, str):
                selected.append((c.THIRD_PARTY_INVITE, token))
        if membership == c.JOIN and room_version.restricted_join_rule:
            authoriser = content.get(c.AUTHORISING_USER)
            if isinstance(authoriser, str):
                selected.append((c.MEMBER, authoriser))
    # The target or authoriser may be the sender: keep the first occurrence only.
    return list(dict.fromkeys(selected))


def check_auth_events(
    room_version: RoomVersion,
    event: Event,
    auth_events: Iterable[Event],
    *,
    rejected_event_ids: Collection[str] = (),
    create_event: Event | None = None,
) -> dict[StateKey, Event]:
    """Rule "Considering the event's auth_events"; returns them as a state map for check_auth_rules.

    For v12+ rooms the create event is not among the auth events: pass it as `create_event` and it is
    added to the returned map (check_auth_rules always needs it).
    """
    if event.type == c.CREATE:
        return {}
    expected = set(
        auth_types_for_event(
            room_version,
            type=event.type,
            sender=event.sender,
            state_key=event.state_key,
            content=event.content,
        )
    )
    state: dict[StateKey, Event] = {}
    for auth_event in auth_events:
        if auth_event.room_id != event.room_id:
            raise AuthError(f"Auth event {auth_event.event_id} is in another room ({auth_event.room_id})")
        if auth_event.state_key is None:
            raise AuthError(f"Auth event {auth_event.event_id} is not a state event")
        key = (auth_event.type, auth_event.state_key)
        if key in state:
            raise AuthError(
                f"Duplicate auth events for {key}: {state[key].event_id} and {auth_event.event_id}"
            )
        if key not in expected:
            raise AuthError(f"Unexpected auth event {auth_event.event_id} for {key}")
        if auth_event.event_id in rejected_event_ids:
            raise AuthError(f"Auth event {auth_event.event_id} was rejected")
        state[key] = auth_event
    if room_version.auth_events_include_create:
        if CREATE_KEY not in state:
            raise AuthError("No m.room.create event in auth events")
    elif create_event is not None:
        state[CREATE_KEY] = create_event
    return state


def with_create_event(auth_state: AuthState, state: AuthState) -> AuthState:
    """`auth_state` plus the create event of `state` when it lacks one.

    From room v12 the create event is not selected for auth_events, but `check_auth_rules` still
    needs it (room id, creators); a caller that selected the auth events from a state map passes
    them through this before checking. Earlier versions: `auth_state` already has it (returned as is).
    """
    if CREATE_KEY in auth_state:
        return auth_state
    create = state.get(CREATE_KEY)
    return auth_state if create is None else {**auth_state, CREATE_KEY: create}


# -- the rules -----------------------------------------------------------------------------------


def check_auth_rules(room_version: RoomVersion, event: Event, auth_state: AuthState) -> None:
    """Authorise `event` against a state map (must contain the create event). Raises AuthError."""
    if event.type == c.CREATE:
        _check_create(room_version, event)
        return

    create = auth_state.get(CREATE_KEY)
    if create is None:
        raise AuthError("No m.room.create event in the auth state")
    if room_version.room_ids_as_hashes:
        if event.room_id != "!" + create.event_id[1:]:
            raise AuthError("Room id is not the id of the room's create event")
    elif create.room_id != event.room_id:
        raise AuthError("The create event is for another room")

    # m.federate: false keeps other servers out. Synapse treats any value other than true as false.
    if create.content.get("m.federate", True) is not True and _domain(event.sender) != _domain(create.sender):
        raise AuthError("This room is not federated")

    if room_version.special_case_aliases_auth and event.type == c.ALIASES:
        if event.state_key is None:
            raise AuthError("m.room.aliases must be a state event")
        if event.state_key != _domain(event.sender):
            raise AuthError("m.room.aliases state_key must be the sender's server")
        return

    if event.type == c.MEMBER:
        _check_membership(room_version, event, auth_state, create)
        return

    if get_membership(event.sender, auth_state) != c.JOIN:
        raise AuthError(f"{event.sender} is not in the room")

    power_levels = get_power_levels_content(auth_state)
    sender_level = user_power_level(event.sender, auth_state)

    if event.type == c.THIRD_PARTY_INVITE:
        if sender_level >= get_named_level("invite", power_levels):
            return
        raise AuthError("Insufficient power to send third-party invites")

    required = required_power_level(event.type, event.state_key is not None, power_levels)
    if required > sender_level:
        raise AuthError(f"Insufficient power to send {event.type}: need {required}, have {sender_level}")

    if event.state_key is not None and event.state_key.startswith("@") and event.state_key != event.sender:
        raise AuthError("Cannot set state keyed by another user's id")

    if event.type == c.POWER_LEVELS:
        _check_power_levels(room_version, event, auth_state, sender_level)


def _check_create(room_version: RoomVersion, event: Event) -> None:
    if event.prev_event_ids:
        raise AuthError("m.room.create must not have prev_events")
    if room_version.room_ids_as_hashes:
        if "room_id" in event.pdu:
            raise AuthError("m.room.create must not have a room_id in this room version")
    else:
        room_domain = _domain(event.room_id)
        if room_domain is None or room_domain != _domain(event.sender):
            raise AuthError("m.room.create room_id and sender are on different servers")
    content = event.content
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError(f"Unknown room version {content['room_version']!r}")
    if not room_version.implicit_room_creator and "creator" not in content:
        raise AuthError("m.room.create has no creator")
    if room_version.privileged_creators and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in extra):
            raise AuthError("additional_creators must be a list of user ids")


def _check_membership(room_version: RoomVersion, event: Event, auth_state: AuthState, create: Event) -> None:
    target = event.state_key
    membership = event.content.get("membership")
    if target is None or not isinstance(membership, str):
        raise AuthError("Member event without state_key or membership")
    sender = event.sender

    if membership == c.JOIN:
        prev = event.prev_event_ids
        # The creator's own first join, straight after the create event.
        if len(prev) == 1 and prev[0] == create.event_id and target == room_creator(create):
            return
        if sender != target:
            raise AuthError("Cannot make another user join")
        current = get_membership(sender, auth_state)
        if current == c.BAN:
            raise AuthError(f"{sender} is banned from the room")
        join_rule = get_join_rule(auth_state)
        if join_rule == c.INVITE or (room_version.knock_join_rule and join_rule == c.KNOCK):
            if current in (c.INVITE, c.JOIN):
                return
            raise AuthError(f"{sender} is not invited to the room")
        if (room_version.restricted_join_rule and join_rule == c.RESTRICTED) or (
            room_version.knock_restricted_join_rule and join_rule == c.KNOCK_RESTRICTED
        ):
            if current in (c.INVITE, c.JOIN):
                return
            authoriser = event.content.get(c.AUTHORISING_USER)
            if not isinstance(authoriser, str):
                raise AuthError("Restricted join without join_authorised_via_users_server")
            if get_membership(authoriser, auth_state) != c.JOIN:
                raise AuthError(f"Authorising user {authoriser} is not in the room")
            invite_level = get_named_level("invite", get_power_levels_content(auth_state))
            if user_power_level(authoriser, auth_state) < invite_level:
                raise AuthError(f"Authorising user {authoriser} cannot invite")
            return
        if join_rule == c.PUBLIC:
            return
        raise AuthError(f"Cannot join a room with join rule {join_rule!r}")

    if membership == c.INVITE:
        target_membership = get_membership(target, auth_state)
        if "third_party_invite" in event.content:
            if target_membership == c.BAN:
                raise AuthError(f"{target} is banned from the room")
            _check_third_party_invite(event, auth_state)
            return
        if get_membership(sender, auth_state) != c.JOIN:
            raise AuthError(f"{sender} is not in the room")
        if target_membership in (c.JOIN, c.BAN):
            raise AuthError(f"{target} is {target_membership} and cannot be invited")
        invite_level = get_named_level("invite", get_power_levels_content(auth_state))
        if user_power_level(sender, auth_state) >= invite_level:
            return
        raise AuthError("Insufficient power to invite")

    if membership == c.LEAVE:
        current = get_membership(sender, auth_state)
        if sender == target:
            if current in (c.INVITE, c.JOIN) or (room_version.knock_join_rule and current == c.KNOCK):
                return
            raise AuthError(f"{sender} cannot leave from membership {current!r}")
        if current != c.JOIN:
            raise AuthError(f"{sender} is not in the room")
        power_levels = get_power_levels_content(auth_state)
        sender_level = user_power_level(sender, auth_state)
        target_level = user_power_level(target, auth_state)
        target_banned = get_membership(target, auth_state) == c.BAN
        if target_banned and sender_level < get_named_level("ban", power_levels):
            raise AuthError("Insufficient power to unban")
        if sender_level >= get_named_level("kick", power_levels) and target_level < sender_level:
            return
        raise AuthError(f"Insufficient power to kick {target}")

    if membership == c.BAN:
        if get_membership(sender, auth_state) != c.JOIN:
            raise AuthError(f"{sender} is not in the room")
        sender_level = user_power_level(sender, auth_state)
        ban_level = get_named_level("ban", get_power_levels_content(auth_state))
        if sender_level >= ban_level and user_power_level(target, auth_state) < sender_level:
            return
        raise AuthError(f"Insufficient power to ban {target}")

    if membership == c.KNOCK and room_version.knock_join_rule:
        join_rule = get_join_rule(auth_state)
        if join_rule != c.KNOCK and not (
            room_version.knock_restricted_join_rule and join_rule == c.KNOCK_RESTRICTED
        ):
            raise AuthError("The room does not accept knocks")
        if sender != target:
            raise AuthError("Cannot knock on behalf of another user")
        if get_membership(sender, auth_state) not in (c.BAN, c.INVITE, c.JOIN):
            return
        raise AuthError(f"{sender} cannot knock from their current membership")

    raise AuthError(f"Unknown membership {membership!r}")


def _check_third_party_invite(event: Event, auth_state: AuthState) -> None:
    tpi = event.content["third_party_invite"]
    signed = tpi.get("signed") if isinstance(tpi, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("third_party_invite has no signed object")
    if "mxid" not in signed or "token" not in signed:
        raise AuthError("third_party_invite.signed lacks mxid or token")
    if signed["mxid"] != event.state_key:
        raise AuthError("third_party_invite mxid does not match the invited user")
    token = signed["token"]
    invite = auth_state.get((c.THIRD_PARTY_INVITE, token)) if isinstance(token, str) else None
    if invite is None:
        raise AuthError("No m.room.third_party_invite for this token")
    if invite.sender != event.sender:
        raise AuthError("Sender does not match the m.room.third_party_invite sender")

    public_keys: list[str] = []
    single = invite.content.get("public_key")
    if isinstance(single, str):
        public_keys.append(single)
    listed = invite.content.get("public_keys")
    if isinstance(listed, list):
        public_keys.extend(
            k["public_key"] for k in listed if isinstance(k, Mapping) and isinstance(k.get("public_key"), str)
        )
    signatures = signed.get("signatures")
    if isinstance(signatures, Mapping):
        for public_key in public_keys:
            for server, by_key in signatures.items():
                if not isinstance(by_key, Mapping):
                    continue
                for key_id in by_key:
                    if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                        continue
                    try:
                        verify_ed25519_signature(signed, server, key_id, public_key)
                    except SignatureError:
                        continue
                    return
    raise AuthError("No valid signature on the third-party invite")


_NAMED_LEVELS: Final = tuple(NAMED_LEVEL_DEFAULTS)


def _check_power_levels(
    room_version: RoomVersion, event: Event, auth_state: AuthState, sender_level: int
) -> None:
    content = event.content
    strict = room_version.enforce_int_power_levels
    if strict:
        for name in _NAMED_LEVELS:
            if name in content and type(content[name]) is not int:
                raise AuthError(f"Power level {name!r} must be an integer")
        for name in ("events", "notifications"):
            if name in content:
                value = content[name]
                if not isinstance(value, Mapping) or any(type(v) is not int for v in value.values()):
                    raise AuthError(f"Power levels {name!r} must map to integers")

    users = content.get("users", {})
    if not isinstance(users, Mapping):
        raise AuthError("Power levels 'users' must be an object")
    for user_id, level in users.items():
        if not _looks_like_user_id(user_id):
            raise AuthError(f"Invalid user id in power levels: {user_id!r}")
        if (type(level) is not int) if strict else (parse_power_level(level) is None):
            raise AuthError(f"Invalid power level for {user_id}: {level!r}")

    if room_version.privileged_creators:
        create = auth_state[CREATE_KEY]
        if any(u in users for u in room_creators(create)):
            raise AuthError("Room creators cannot be given a power level")

    old_event = auth_state.get(POWER_LEVELS_KEY)
    if old_event is None:
        return
    old = old_event.content

    for name in _NAMED_LEVELS:
        old_value = _optional_level(old, name)
        new_value = _optional_level(content, name)
        if old_value == new_value:
            continue
        if old_value is not None and old_value > sender_level:
            raise AuthError(f"Cannot change {name!r} from a level above your own")
        if new_value is not None and new_value > sender_level:
            raise AuthError(f"Cannot set {name!r} above your own level")

    mapped = ("events", "notifications") if room_version.limit_notifications_power_levels else ("events",)
    for name in mapped:
        old_map = _level_map(old, name)
        new_map = _level_map(content, name)
        for key in old_map.keys() | new_map.keys():
            old_value = old_map.get(key)
            new_value = new_map.get(key)
            if old_value == new_value:
                continue
            if old_value is not None and old_value > sender_level:
                raise AuthError(f"Cannot change {name}[{key!r}] from a level above your own")
            if new_value is not None and new_value > sender_level:
                raise AuthError(f"Cannot set {name}[{key!r}] above your own level")

    old_users = _level_map(old, "users")
    new_users = _level_map(content, "users")
    for user_id in old_users.keys() | new_users.keys():
        old_value = old_users.get(user_id)
        new_value = new_users.get(user_id)
        if old_value == new_value:
            continue
        if old_value is not None and user_id != event.sender and old_value >= sender_level:
            raise AuthError(f"Cannot change the level of {user_id}, who is not below you")
        if new_value is not None and new_value > sender_level:
            raise AuthError(f"Cannot give {user_id} a level above your own")


def _optional_level(content: Mapping[str, Any], name: str) -> int | None:
    value = content.get(name)
    return None if value is None else _level(value, name)


def _level_map(content: Mapping[str, Any], name: str) -> dict[str, int]:
    """A parsed `events`/`notifications`/`users` map; entries with null values count as absent."""
    value = content.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AuthError(f"Power levels {name!r} must be an object")
    return {k: _level(v, f"{name}[{k!r}]") for k, v in value.items() if v is not None}
