"""Content hashes, reference hashes and event ids (server-server-api.md "Signing Events").

The redacted event without `signatures`/`unsigned` is both what the origin server signs and what the
reference hash covers, so `redacted_signing_bytes` is the one encode that event ids and event
signatures share.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from homeserver.crypto.canonical import encode_canonical_json
from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import EventIdFormat, RoomVersion

_HASH_EXCLUDED = frozenset({"unsigned", "signatures", "hashes"})


def _b64(data: bytes) -> str:
    return base64.b64encode(data).rstrip(b"=").decode("ascii")


def _b64_urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def content_hash_bytes(event: Mapping[str, Any], *, strict: bool = True) -> bytes:
    """sha256 over the canonical event without `unsigned`, `signatures` and `hashes`."""
    stripped = {k: v for k, v in event.items() if k not in _HASH_EXCLUDED}
    return hashlib.sha256(encode_canonical_json(stripped, strict=strict)).digest()


def compute_content_hash(event: Mapping[str, Any], *, strict: bool = True) -> str:
    """The content hash as unpadded base64 (the value of `hashes.sha256`)."""
    return _b64(content_hash_bytes(event, strict=strict))


def add_content_hash(event: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """A copy of `event` with `hashes` set to {"sha256": <content hash>}."""
    out = dict(event)
    out["hashes"] = {"sha256": compute_content_hash(event, strict=strict)}
    return out


def check_content_hash(event: Mapping[str, Any], *, strict: bool = True) -> bool:
    """True when `hashes.sha256` matches the event; False if it is missing, malformed or differs."""
    hashes = event.get("hashes")
    if not isinstance(hashes, Mapping):
        return False
    claimed = hashes.get("sha256")
    if not isinstance(claimed, str):
        return False
    try:
        # Accept padded/unpadded, standard/url-safe like unpaddedbase64 does.
        claimed_bytes = base64.b64decode(claimed + "=" * (-len(claimed) % 4), altchars=b"-_", validate=True)
    except ValueError:  # binascii.Error
        return False
    return hmac.compare_digest(claimed_bytes, content_hash_bytes(event, strict=strict))


def redacted_signing_bytes(pdu: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """Canonical JSON of the redacted PDU without `signatures` and `unsigned`.

    These bytes are signed by the origin server and hashed for the reference hash.
    """
    pruned = prune_event_dict(room_version, pdu)
    pruned.pop("signatures", None)
    pruned.pop("unsigned", None)  # never kept by pruning; defensive for callers' pre-pruned dicts
    return encode_canonical_json(pruned, strict=room_version.strict_canonical_json)


def compute_reference_hash(event: Mapping[str, Any], room_version: RoomVersion) -> bytes:
    """sha256 digest of the redacted event (no signatures/unsigned, so no age_ts either)."""
    return hashlib.sha256(redacted_signing_bytes(event, room_version)).digest()


def event_id_from_reference_hash(digest: bytes, room_version: RoomVersion) -> str:
    if room_version.event_id_format is EventIdFormat.V3:
        return "$" + _b64(digest)
    return "$" + _b64_urlsafe(digest)


def event_id_from_signing_bytes(data: bytes, room_version: RoomVersion) -> str:
    """Event id from bytes already produced by `redacted_signing_bytes` (saves a second encode)."""
    return event_id_from_reference_hash(hashlib.sha256(data).digest(), room_version)


def event_id_from_pdu(pdu: Mapping[str, Any], room_version: RoomVersion) -> str:
    """`$` + unpadded base64 of the reference hash (URL-safe alphabet from room version 4)."""
    return event_id_from_reference_hash(compute_reference_hash(pdu, room_version), room_version)


def room_id_from_create_event_id(event_id: str) -> str:
    """Room v12+: the room id is the create event's id with the `!` sigil."""
    return "!" + event_id[1:]
