"""Client-server serialisation of PDUs (ClientEvent / ClientEventWithoutRoomID)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events import constants as c


def client_event(
    pdu: Mapping[str, Any],
    event_id: str,
    *,
    include_room_id: bool = True,
    unsigned: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The client format of a PDU: federation-only fields (prev/auth events, hashes, signatures, depth,
    origin) are left out. `unsigned` is what the caller computed for this client (age, transaction_id,
    prev_content, redacted_because, ...); the PDU's own unsigned is server-side data and is not
    copied. Values are shared with the PDU, not copied.

    Redactions carry `redacts` both at the top level and in content whatever the room version, as the
    v11 spec asks servers to do for compatibility with old and new clients.
    """
    out: dict[str, Any] = {
        "content": pdu.get("content", {}),
        "event_id": event_id,
        "origin_server_ts": pdu.get("origin_server_ts", 0),
        "sender": pdu.get("sender"),
        "type": pdu.get("type"),
    }
    if include_room_id:
        room_id = pdu.get("room_id")
        if room_id is None and pdu.get("type") == c.CREATE:
            room_id = "!" + event_id[1:]  # v12 create event: room id derives from its event id
        out["room_id"] = room_id
    if "state_key" in pdu:
        out["state_key"] = pdu["state_key"]
    if unsigned:
        out["unsigned"] = dict(unsigned)
    if out["type"] == c.REDACTION:
        content = out["content"]
        top = pdu.get("redacts")
        if isinstance(top, str):  # v1-v10: authoritative at the top level
            out["redacts"] = top
            if isinstance(content, Mapping) and content.get("redacts") != top:
                out["content"] = {**content, "redacts": top}
        elif isinstance(content, Mapping) and isinstance(content.get("redacts"), str):  # v11+
            out["redacts"] = content["redacts"]
    return out
