"""Building, hashing and signing new local events.

The PDU has exactly the fields of the version's format, like current Synapse emits: no `origin`
(not part of any PDU schema and unprotected by redaction from v11), `redacts` at the top level before
v11 and in content from v11, no `room_id` on a v12 create event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.core.json import MAX_EVENT_CONTENT_DEPTH, canonical_problem
from homeserver.crypto.event_signing import hash_and_sign_event
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion


def build_event(
    room_version: RoomVersion,
    *,
    room_id: str | None,
    sender: str,
    type: str,
    content: Mapping[str, Any],
    state_key: str | None = None,
    prev_event_ids: Sequence[str],
    auth_event_ids: Sequence[str],
    depth: int,
    origin_server_ts: int,
    server_name: str,
    signing_key: ServerSigningKey,
    redacts: str | None = None,
    unsigned_extra: Mapping[str, Any] | None = None,
) -> Event:
    """Build a signed PDU and wrap it as an Event.

    `content` is used as given (not copied) unless `redacts` has to be added to it. `depth` is capped
    at the version's maximum. For a v12 m.room.create the room_id argument is ignored (None or a
    provisional id): its room id derives from its event id (`event.room_id`). `unsigned_extra`
    (e.g. invite_room_state) goes into `unsigned`, which is covered by neither hash nor signature.
    """
    # Refuse content the room version cannot sign (floats, unsafe integers in v6+; over-deep nesting)
    # before hashing it: clients get 400 M_BAD_JSON, as from Synapse's EventValidator.
    problem = canonical_problem(
        content, strict=room_version.strict_canonical_json, max_depth=MAX_EVENT_CONTENT_DEPTH
    )
    if problem is not None:
        raise MatrixError(400, "M_BAD_JSON", f"Bad JSON value in event content: {problem}")
    is_create = type == c.CREATE and state_key == ""
    pdu: dict[str, Any] = {
        "auth_events": list(auth_event_ids),
        "prev_events": list(prev_event_ids),
        "type": type,
        "sender": sender,
        "content": content,
        "depth": min(depth, room_version.max_depth),
        "origin_server_ts": origin_server_ts,
    }
    # v12+: the create event has no room_id (the room id is not known before this event is hashed;
    # a caller may pass a provisional one, e.g. the key its drafts share).
    if not (room_version.room_ids_as_hashes and is_create):
        if room_id is None:
            raise ValueError("room_id is required")
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if room_version.redacts_in_content:
            if content.get("redacts") != redacts:
                pdu["content"] = {**content, "redacts": redacts}
        else:
            pdu["redacts"] = redacts

    signed, event_id = hash_and_sign_event(room_version, pdu, server_name, signing_key)
    if unsigned_extra:
        signed["unsigned"] = dict(unsigned_extra)
    return Event(signed, room_version, event_id)
