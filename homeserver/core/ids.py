"""Grammar of Matrix identifiers (appendices.md, "Identifier Grammar")."""

from __future__ import annotations

import re
import secrets
import string

from homeserver.core.errors import MatrixError

# Server name: hostname (DNS name, IPv4, or [IPv6]) with optional port.
_SERVER_NAME = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[A-Za-z0-9\-.]{1,255})(?::[0-9]{1,5})?$"
)
# Localparts allowed for new registrations (historical ones are laxer).
_USER_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")
_HISTORICAL_LOCALPART = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
MAX_ID_LENGTH = 255


def is_valid_server_name(name: str) -> bool:
    return bool(_SERVER_NAME.match(name))


def split_id(value: str, sigil: str) -> tuple[str, str]:
    """Split `<sigil>local:domain` into (local, domain); raises ValueError."""
    if not value or value[0] != sigil or ":" not in value:
        raise ValueError(f"not a {sigil}-identifier: {value!r}")
    local, _, domain = value[1:].partition(":")
    if not domain or not is_valid_server_name(domain):
        raise ValueError(f"bad server name in {value!r}")
    return local, domain


def is_valid_user_id(user_id: str, *, historical: bool = True) -> bool:
    if len(user_id.encode()) > MAX_ID_LENGTH:
        return False
    try:
        local, _ = split_id(user_id, "@")
    except ValueError:
        return False
    pattern = _HISTORICAL_LOCALPART if historical else _USER_LOCALPART
    return bool(local) and bool(pattern.match(local))


def is_valid_localpart(localpart: str) -> bool:
    return bool(localpart) and bool(_USER_LOCALPART.match(localpart))


def is_valid_room_id(room_id: str) -> bool:
    if len(room_id.encode()) > MAX_ID_LENGTH or not room_id.startswith("!"):
        return False
    # Room v12 ids carry no server name; earlier ones are !opaque:domain.
    if ":" not in room_id:
        return len(room_id) > 1
    try:
        local, _ = split_id(room_id, "!")
    except ValueError:
        return False
    return bool(local)


def is_valid_room_alias(alias: str) -> bool:
    if len(alias.encode()) > MAX_ID_LENGTH:
        return False
    try:
        local, _ = split_id(alias, "#")
    except ValueError:
        return False
    return bool(local) and ":" not in local


def is_valid_event_id(event_id: str) -> bool:
    return event_id.startswith("$") and 1 < len(event_id.encode()) <= MAX_ID_LENGTH


def server_of(identifier: str) -> str:
    """Domain part of @user:domain, !room:domain, #alias:domain; "" for an identifier without one
    (room v12 ids are `!` + the create event's hash: they name no server)."""
    _, _, domain = identifier.partition(":")
    return domain


def localpart_of(identifier: str) -> str:
    return identifier[1:].split(":", 1)[0]


def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid user id: {user_id!r}")
    return user_id


def check_room_id(room_id: str) -> str:
    if not isinstance(room_id, str) or not is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid room id: {room_id!r}")
    return room_id


_ALNUM = string.ascii_letters + string.digits


def random_string(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_room_id(server_name: str) -> str:
    return f"!{random_string(18)}:{server_name}"


def new_device_id() -> str:
    return random_string(10, string.ascii_uppercase)
