"""Hashing and signing PDUs, and what must be checked on received ones.

server-server-api.md "Adding hashes and signatures to outgoing events" and "Validating hashes and
signatures on received events".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacl.signing import VerifyKey

from homeserver.core.ids import server_of
from homeserver.crypto.hashes import (
    compute_content_hash,
    event_id_from_signing_bytes,
    redacted_signing_bytes,
)
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.signing import add_signature, get_signature, sign_bytes, verify_signature_bytes
from homeserver.events import constants as c
from homeserver.events.room_versions import RoomVersion


def hash_and_sign_event(
    room_version: RoomVersion, pdu: Mapping[str, Any], server_name: str, key: ServerSigningKey
) -> tuple[dict[str, Any], str]:
    """Add the content hash and this server's signature; return (signed pdu, event id).

    Two canonical encodes in total: the full event for the content hash, and the redacted event,
    whose bytes are both signed and hashed into the event id.
    """
    hashed = dict(pdu)
    hashed["hashes"] = {"sha256": compute_content_hash(pdu, strict=room_version.strict_canonical_json)}
    data = redacted_signing_bytes(hashed, room_version)
    signed = add_signature(hashed, server_name, key.key_id, sign_bytes(data, key))
    return signed, event_id_from_signing_bytes(data, room_version)


def sign_event(
    room_version: RoomVersion, pdu: Mapping[str, Any], server_name: str, key: ServerSigningKey
) -> dict[str, Any]:
    """Add this server's signature to an already-hashed PDU (e.g. an invite or a send_join event)."""
    data = redacted_signing_bytes(pdu, room_version)
    return add_signature(pdu, server_name, key.key_id, sign_bytes(data, key))


def verify_event_signature(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    server_name: str,
    key_id: str,
    verify_key: VerifyKey,
    *,
    signing_data: bytes | None = None,
) -> None:
    """Check `server_name`'s signature with `key_id` on a PDU (over its redacted form).

    Pass `signing_data` (from `redacted_signing_bytes`) when checking several signatures or when the
    event id was computed from the same bytes. Raises SignatureError.
    """
    signature = get_signature(pdu, server_name, key_id)
    data = signing_data if signing_data is not None else redacted_signing_bytes(pdu, room_version)
    verify_signature_bytes(data, signature, verify_key)


def required_signers(room_version: RoomVersion, pdu: Mapping[str, Any]) -> set[str]:
    """Servers whose valid signature a received PDU must carry.

    - the sender's server, except for invites made from a third-party invite (the sending server may
      differ; the auth rules tie the sender to the m.room.third_party_invite instead);
    - for restricted joins (v8+), the server of content.join_authorised_via_users_server (auth rule
      "validly signed by the homeserver of the user ID denoted by the key").
    """
    servers: set[str] = set()
    content = pdu.get("content")
    content = content if isinstance(content, Mapping) else {}
    is_member = pdu.get("type") == c.MEMBER
    membership = content.get("membership") if is_member else None
    sender = pdu.get("sender")
    if isinstance(sender, str) and ":" in sender:
        if not (membership == c.INVITE and "third_party_invite" in content):
            servers.add(server_of(sender))
    if room_version.restricted_join_rule and membership == c.JOIN:
        authoriser = content.get(c.AUTHORISING_USER)
        if isinstance(authoriser, str) and ":" in authoriser:
            servers.add(server_of(authoriser))
    return servers
