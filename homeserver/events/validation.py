"""PDU shape and size checks.

`validate_pdu_size_and_fields` is the client-server "Size limits" section; `validate_pdu_format` adds
the room version's PDU schema (server-server "Checks performed on receipt of a PDU", step 1) and is a
superset, meant for events received over federation before they are hashed, verified and authed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeGuard

from homeserver.core.errors import MatrixError
from homeserver.core.ids import is_valid_room_id, is_valid_user_id
from homeserver.core.json import check_canonical_values
from homeserver.crypto.canonical import encode_canonical_json
from homeserver.events import constants as c
from homeserver.events.room_versions import RoomVersion

MAX_PDU_SIZE: Final = 65536
MAX_FIELD_BYTES: Final = 255
MAX_PREV_EVENTS: Final = 20
MAX_AUTH_EVENTS: Final = 10

_SIZE_LIMITED_FIELDS: Final = ("sender", "room_id", "state_key", "type", "event_id")


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def validate_pdu_size_and_fields(pdu: Mapping[str, Any], *, encoded: bytes | None = None) -> None:
    """The spec's size limits: 64 KiB canonical JSON for the whole PDU (with signatures) and 255 bytes
    for sender, room_id, state_key, type and event_id.

    Raises 413 M_TOO_LARGE for size, 400 M_BAD_JSON when one of those fields is not a string. Pass
    `encoded` when the canonical bytes of the PDU are already at hand.
    """
    for name in _SIZE_LIMITED_FIELDS:
        value = pdu.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _bad(f"'{name}' must be a string")
        # Byte length is at most 4x the code point count: skip the encode for short values.
        if len(value) * 4 > MAX_FIELD_BYTES and len(value.encode("utf-8")) > MAX_FIELD_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", f"'{name}' is longer than {MAX_FIELD_BYTES} bytes")
    if encoded is None:
        encoded = encode_canonical_json(pdu)
    if len(encoded) > MAX_PDU_SIZE:
        raise MatrixError(413, "M_TOO_LARGE", f"Event is larger than {MAX_PDU_SIZE} bytes")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_id_list(pdu: Mapping[str, Any], name: str, limit: int) -> None:
    value = pdu.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) and v.startswith("$") for v in value):
        raise _bad(f"'{name}' must be a list of event ids")
    if len(value) > limit:
        raise _bad(f"'{name}' has more than {limit} entries")


def validate_pdu_format(pdu: Mapping[str, Any], room_version: RoomVersion) -> None:
    """Check a PDU against its room version's event format, then the size limits.

    Raises MatrixError 400 M_BAD_JSON (or 413 M_TOO_LARGE).
    """
    if not isinstance(pdu, Mapping):
        raise _bad("Event is not an object")
    etype = pdu.get("type")
    if not isinstance(etype, str):
        raise _bad("'type' must be a string")
    sender = pdu.get("sender")
    if not isinstance(sender, str) or not is_valid_user_id(sender):
        raise _bad("'sender' must be a valid user id")
    content = pdu.get("content")
    if not isinstance(content, Mapping):
        raise _bad("'content' must be an object")
    state_key = pdu.get("state_key")
    if "state_key" in pdu and not isinstance(state_key, str):
        raise _bad("'state_key' must be a string")

    room_id = pdu.get("room_id")
    if room_version.room_ids_as_hashes and etype == c.CREATE and state_key == "":
        if "room_id" in pdu:
            raise _bad("A create event of this room version has no 'room_id'")
    elif not isinstance(room_id, str) or not is_valid_room_id(room_id):
        raise _bad("'room_id' must be a valid room id")

    ts = pdu.get("origin_server_ts")
    if not _is_int(ts):
        raise _bad("'origin_server_ts' must be an integer")
    depth = pdu.get("depth")
    if not _is_int(depth) or not 0 <= depth <= room_version.max_depth:
        raise _bad("'depth' must be a non-negative integer within range")
    _check_id_list(pdu, "prev_events", MAX_PREV_EVENTS)
    _check_id_list(pdu, "auth_events", MAX_AUTH_EVENTS)

    hashes = pdu.get("hashes")
    if not isinstance(hashes, Mapping) or not isinstance(hashes.get("sha256"), str):
        raise _bad("'hashes' must contain a sha256 string")
    signatures = pdu.get("signatures")
    if not isinstance(signatures, Mapping) or not all(
        isinstance(sigs, Mapping) and all(isinstance(s, str) for s in sigs.values())
        for sigs in signatures.values()
    ):
        raise _bad("'signatures' must map server names to {key id: signature}")
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], Mapping):
        raise _bad("'unsigned' must be an object")
    if etype == c.REDACTION:
        redacts = content.get("redacts") if room_version.redacts_in_content else pdu.get("redacts")
        if redacts is not None and not isinstance(redacts, str):
            raise _bad("'redacts' must be an event id")

    if room_version.strict_canonical_json and not check_canonical_values(pdu):
        raise _bad("Event is not canonical JSON (floats or out-of-range integers)")
    validate_pdu_size_and_fields(
        pdu, encoded=encode_canonical_json(pdu, strict=room_version.strict_canonical_json)
    )
