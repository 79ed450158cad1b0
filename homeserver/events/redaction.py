"""The redaction algorithm (client-server "Redactions"; rooms/vN.md for each version's key lists)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events import constants as c
from homeserver.events.room_versions import RoomVersion

_NOTHING: frozenset[str] = frozenset()


def prune_event_dict(room_version: RoomVersion, event: Mapping[str, Any]) -> dict[str, Any]:
    """Return the redacted form of a PDU (or client event) dict.

    The result is a new top-level dict with a new `content`; nested values are shared with the input
    (callers treat PDUs as immutable). `unsigned` is dropped: it is not part of the redacted event, and
    anything a server wants to keep there (e.g. redacted_because) is added back by the caller.
    """
    rules = room_version.redaction
    top_level = rules.top_level
    pruned = {key: value for key, value in event.items() if key in top_level}

    content = event.get("content")
    new_content: dict[str, Any] = {}
    if isinstance(content, Mapping):
        event_type = event.get("type")
        keep = rules.content.get(event_type, _NOTHING) if isinstance(event_type, str) else _NOTHING
        if keep is None:  # keep everything (v11 m.room.create)
            new_content = dict(content)
        else:
            for key in keep:
                if key in content:
                    new_content[key] = content[key]
            if rules.keep_third_party_invite_signed and event_type == c.MEMBER:
                tpi = content.get("third_party_invite")
                # Synapse keeps a (possibly empty) third_party_invite object; match it, since the
                # redacted form feeds the reference hash and so the event id.
                if isinstance(tpi, Mapping):
                    new_content["third_party_invite"] = {"signed": tpi["signed"]} if "signed" in tpi else {}
    # `content` is always present after redaction, even if the input lacked it.
    pruned["content"] = new_content
    return pruned
