"""Shared pieces of the membership handshakes (both directions): a keyring that knows our own key,
the auth check of a received event against its auth events, and the shape checks of a membership
event (server-server-api.md "Joining Rooms", "Inviting to a room", "Knocking upon a room").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nacl.signing import VerifyKey

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.crypto.keyring import Keyring
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events import constants as c
from homeserver.events.auth import (
    AuthError,
    auth_types_for_event,
    check_auth_events,
    check_auth_rules,
    with_create_event,
)
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, get_room_version

StateKey = tuple[str, str]


def supported_versions() -> list[str]:
    """Room versions this server can join (the `ver` of make_join / make_knock)."""
    return list(KNOWN_ROOM_VERSIONS)


def room_version_or_error(identifier: Any) -> RoomVersion:
    version = get_room_version(identifier) if isinstance(identifier, str) else None
    if version is None:
        raise MatrixError(
            400,
            "M_INCOMPATIBLE_ROOM_VERSION",
            "This server does not support the room's version",
            room_version=identifier if isinstance(identifier, str) else "",
        )
    return version


class OwnKeyFirst:
    """The keyring, except that our own signatures (a restricted join we authorise, an invite we
    countersign) are checked with our signing key directly."""

    def __init__(self, keyring: Keyring, server_name: str, signing_key: ServerSigningKey) -> None:
        self.keyring = keyring
        self.server_name = server_name
        self.signing_key = signing_key

    async def get_verify_key(self, server_name: str, key_id: str, *, valid_at_ts: int) -> VerifyKey | None:
        if server_name == self.server_name and key_id == self.signing_key.key_id:
            return self.signing_key.verify_key
        return await self.keyring.get_verify_key(server_name, key_id, valid_at_ts=valid_at_ts)


def invalid(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def check_membership_shape(
    event: Event, *, room_id: str, event_id: str | None, membership: str, origin: str | None
) -> None:
    """The checks the spec asks of a send_join/send_leave/send_knock/invite body (400 if not met)."""
    if event_id is not None and event.event_id != event_id:
        raise invalid("The event id does not match the one in the path")
    if event.room_id != room_id:
        raise invalid("The event's room_id does not match the one in the path")
    if event.type != c.MEMBER:
        raise invalid("The event is not an m.room.member event")
    if event.content.get("membership") != membership:
        raise invalid(f"The membership is not {membership!r}")
    if membership != c.INVITE:
        if event.state_key != event.sender:
            raise invalid("The state_key is not the sender")
        if origin is not None and ids.server_of(event.sender) != origin:
            raise invalid("The sender is not a user of the origin server")
    elif origin is not None and ids.server_of(event.sender) != origin:
        raise MatrixError(403, "M_FORBIDDEN", "The inviter is not a user of the origin server")


def auth_against(
    version: RoomVersion,
    event: Event,
    auth_events: Sequence[Event],
    *,
    create_event: Event | None = None,
    rejected: Sequence[str] = (),
) -> None:
    """Rules "considering the event's auth_events" and the auth rules; raises AuthError (403)."""
    auth_state = check_auth_events(
        version, event, auth_events, rejected_event_ids=rejected, create_event=create_event
    )
    check_auth_rules(version, event, auth_state)


def auth_against_state(version: RoomVersion, event: Event, state: Mapping[StateKey, Event]) -> None:
    """The auth rules against a room state (the current state, or the state a join arrives with)."""
    keys = auth_types_for_event(
        version, type=event.type, sender=event.sender, state_key=event.state_key, content=event.content
    )
    auth_state = {k: state[k] for k in keys if k in state}
    check_auth_rules(version, event, with_create_event(auth_state, state))


__all__ = [
    "AuthError",
    "OwnKeyFirst",
    "auth_against",
    "auth_against_state",
    "check_membership_shape",
    "invalid",
    "room_version_or_error",
    "supported_versions",
]
