"""The event model: a thin, read-only view over a PDU dict.

Hot fields are copied into slots once at construction (attribute reads are then plain slot loads);
rarer ones are properties over the PDU. The PDU dict is shared, never copied: treat it as immutable.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.crypto.hashes import event_id_from_pdu, room_id_from_create_event_id
from homeserver.events import constants as c
from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import RoomVersion

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Event:
    __slots__ = (
        "content",
        "depth",
        "event_id",
        "origin_server_ts",
        "pdu",
        "room_id",
        "room_version",
        "sender",
        "state_key",
        "type",
    )

    event_id: str
    room_id: str
    type: str
    state_key: str | None
    sender: str
    content: Mapping[str, Any]
    depth: int
    origin_server_ts: int
    pdu: dict[str, Any]
    room_version: RoomVersion

    def __init__(self, pdu: dict[str, Any], room_version: RoomVersion, event_id: str | None = None) -> None:
        """Wrap a full PDU. The event id is computed from the reference hash unless given (pass it when
        it is already known, e.g. loaded from the database, to skip a redact+encode+hash).

        Raises MatrixError(400, M_BAD_JSON) when a field the model needs has the wrong type; full
        format checks live in events/validation.py and should run first on untrusted input.
        """
        try:
            etype = pdu["type"]
            sender = pdu["sender"]
            content = pdu.get("content")
            if content is None:
                content = {}
            state_key = pdu.get("state_key")
            if not (
                isinstance(etype, str)
                and isinstance(sender, str)
                and isinstance(content, Mapping)
                and (state_key is None or isinstance(state_key, str))
            ):
                raise TypeError
        except (KeyError, TypeError) as exc:
            raise MatrixError(
                400, "M_BAD_JSON", "Malformed event: bad type/sender/content/state_key"
            ) from exc
        self.pdu = pdu
        self.room_version = room_version
        self.type = etype
        self.sender = sender
        self.content = content
        self.state_key = state_key
        self.depth = pdu.get("depth", 0)
        self.origin_server_ts = pdu.get("origin_server_ts", 0)
        self.event_id = event_id if event_id is not None else event_id_from_pdu(pdu, room_version)
        room_id = pdu.get("room_id")
        if room_id is None and room_version.room_ids_as_hashes and etype == c.CREATE:
            # v12: the create event has no room_id; the room id is derived from its event id.
            room_id = room_id_from_create_event_id(self.event_id)
        if not isinstance(room_id, str):
            raise MatrixError(400, "M_BAD_JSON", "Malformed event: missing room_id")
        self.room_id = room_id

    # -- derived fields ---------------------------------------------------------------------------

    @property
    def prev_event_ids(self) -> list[str]:
        return self.pdu.get("prev_events") or []

    @property
    def auth_event_ids(self) -> list[str]:
        return self.pdu.get("auth_events") or []

    @property
    def redacts(self) -> str | None:
        """The redacted event id of an m.room.redaction (v11+: content.redacts; older: top level)."""
        if self.type != c.REDACTION:
            return None
        value = (
            self.content.get("redacts") if self.room_version.redacts_in_content else self.pdu.get("redacts")
        )
        return value if isinstance(value, str) else None

    @property
    def membership(self) -> str | None:
        if self.type != c.MEMBER:
            return None
        value = self.content.get("membership")
        return value if isinstance(value, str) else None

    @property
    def state_key_tuple(self) -> tuple[str, str]:
        """(type, state_key) for state events; raises ValueError for message events."""
        if self.state_key is None:
            raise ValueError(f"{self.event_id} is not a state event")
        return (self.type, self.state_key)

    @property
    def unsigned(self) -> Mapping[str, Any]:
        value = self.pdu.get("unsigned")
        return value if isinstance(value, Mapping) else _EMPTY

    @property
    def hashes(self) -> Mapping[str, Any]:
        value = self.pdu.get("hashes")
        return value if isinstance(value, Mapping) else _EMPTY

    @property
    def signatures(self) -> Mapping[str, Any]:
        value = self.pdu.get("signatures")
        return value if isinstance(value, Mapping) else _EMPTY

    def is_state(self) -> bool:
        return self.state_key is not None

    def redacted(self) -> Event:
        """This event after redaction, with the same event id."""
        return Event(prune_event_dict(self.room_version, self.pdu), self.room_version, self.event_id)

    # -- identity ---------------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)

    def __repr__(self) -> str:
        sk = f", state_key={self.state_key!r}" if self.state_key is not None else ""
        return f"<Event {self.event_id} {self.type}{sk} from {self.sender} in {self.room_id}>"
