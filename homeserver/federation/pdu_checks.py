"""Checks on a PDU received over federation, before any auth rule runs.

server-server-api.md "Checks performed on receipt of a PDU", steps 1-3:

1. it is a valid event for the room version (format, field sizes, 64 KiB), else it is dropped;
2. it carries a valid signature of every required server (`required_signers`: the sender's server,
   and for a v8+ restricted join the server of `join_authorised_via_users_server`), each made with
   a key valid at the event's `origin_server_ts` (v5+; earlier versions did not enforce key
   validity), else it is dropped;
3. its content hash matches, else the event is kept in its *redacted* form.

API (the one entry point; everything else here is private):

    event = await check_pdu(pdu, room_version, keyring)

`keyring` is anything with `get_verify_key(server, key_id, *, valid_at_ts)` (crypto/keyring.py
`Keyring`; in the app `container.federation_keyring`). Returns the `Event` to continue with (the
redacted event on a content-hash mismatch, same event id). Raises `MatrixError`: 400 M_BAD_JSON /
413 M_TOO_LARGE for a malformed PDU, `PduSignatureError` (403 M_FORBIDDEN) for a missing or bad
signature. The caller decides whether the room version is the room's (it passes it in).

`unsigned` from a remote server is not trusted: only the stripped state a membership event carries
(`invite_room_state`, `knock_room_state`) survives; the rest (e.g. a forged `redacted_because`) is
dropped, as Synapse does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.crypto.event_signing import required_signers, verify_event_signature
from homeserver.crypto.hashes import check_content_hash, event_id_from_signing_bytes, redacted_signing_bytes
from homeserver.crypto.keyring import Keyring
from homeserver.crypto.signing import SignatureError
from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.validation import validate_pdu_format

logger = logging.getLogger(__name__)

# unsigned keys a remote server may set on a membership event (stripped state for invites/knocks).
_KEPT_UNSIGNED_MEMBER_KEYS = ("invite_room_state", "knock_room_state")


class PduSignatureError(MatrixError):
    """A required signature is missing, made with an unknown/expired key, or does not verify."""

    def __init__(self, msg: str) -> None:
        super().__init__(403, "M_FORBIDDEN", msg)


def _strip_unsigned(pdu: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(pdu)
    unsigned = out.pop("unsigned", None)
    if isinstance(unsigned, Mapping) and out.get("type") == c.MEMBER:
        kept = {k: unsigned[k] for k in _KEPT_UNSIGNED_MEMBER_KEYS if k in unsigned}
        if kept:
            out["unsigned"] = kept
    return out


async def _check_server_signature(
    pdu: Mapping[str, Any],
    room_version: RoomVersion,
    server: str,
    keyring: Keyring,
    signing_data: bytes,
) -> None:
    """At least one ed25519 signature of `server` verifies; a key we found that fails is an error
    (Synapse's rule: an attacker must not be able to hide a bad signature behind a good one)."""
    signatures = pdu.get("signatures")
    by_server = signatures.get(server) if isinstance(signatures, Mapping) else None
    key_ids = [k for k in by_server if k.startswith("ed25519:")] if isinstance(by_server, Mapping) else []
    if not key_ids:
        raise PduSignatureError(f"Event is not signed by {server}")
    # v5+: the key must be valid when the event was sent; before, any known key will do.
    ts = pdu.get("origin_server_ts")
    valid_at = ts if room_version.enforce_key_validity and isinstance(ts, int) else 0
    verified = False
    for key_id in key_ids:
        try:
            verify_key = await keyring.get_verify_key(server, key_id, valid_at_ts=valid_at)
        except Exception as exc:  # a keyring failure is "no key", never a 500
            logger.warning("key lookup %s %s failed: %s", server, key_id, exc)
            verify_key = None
        if verify_key is None:
            continue
        try:
            verify_event_signature(room_version, pdu, server, key_id, verify_key, signing_data=signing_data)
        except SignatureError as exc:
            raise PduSignatureError(f"Bad signature from {server} with {key_id}: {exc}") from exc
        verified = True
    if not verified:
        raise PduSignatureError(f"No valid key of {server} for the signatures on the event")


async def check_pdu(pdu: Mapping[str, Any], room_version: RoomVersion, keyring: Keyring) -> Event:
    """Format, signatures and content hash of a received PDU; see the module docstring."""
    if not isinstance(pdu, Mapping):
        raise MatrixError(400, "M_BAD_JSON", "Event is not an object")
    validate_pdu_format(pdu, room_version)
    clean = _strip_unsigned(pdu)
    # One encode of the redacted event serves every signature check and the event id.
    signing_data = redacted_signing_bytes(clean, room_version)
    event_id = event_id_from_signing_bytes(signing_data, room_version)
    for server in sorted(required_signers(room_version, clean)):
        await _check_server_signature(clean, room_version, server, keyring, signing_data)
    event = Event(clean, room_version, event_id)
    if not check_content_hash(clean, strict=room_version.strict_canonical_json):
        logger.info("content hash mismatch on %s: keeping the redacted event", event_id)
        return event.redacted()
    return event
