"""Content hashes, reference hashes and event ids."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from homeserver.crypto.hashes import (
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_reference_hash,
    event_id_from_pdu,
)
from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, V3, V4, V10, V11, RoomVersion

MINIMAL_EVENT: dict[str, Any] = {
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "origin": "domain",
    "origin_server_ts": 1000000,
    "signatures": {},
    "hashes": {},
    "type": "X",
    "content": {},
    "prev_events": [],
    "auth_events": [],
    "depth": 3,
    "unsigned": {"age_ts": 1000000},
}

MESSAGE: dict[str, Any] = {
    "auth_events": ["$create", "$power", "$member"],
    "content": {"body": "hello", "msgtype": "m.text"},
    "depth": 7,
    "hashes": {"sha256": "placeholder"},
    "origin_server_ts": 1700000000000,
    "prev_events": ["$prev"],
    "room_id": "!room:example.org",
    "sender": "@alice:example.org",
    "signatures": {"example.org": {"ed25519:a_abcd": "sig"}},
    "type": "m.room.message",
    "unsigned": {"age_ts": 1700000000000},
}


def test_content_hash_spec_vectors() -> None:
    # appendices.md "Event Signing" vectors.
    assert compute_content_hash(MINIMAL_EVENT) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    redactable = {
        "content": {"body": "Here is the message content"},
        "event_id": "$0:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
        "unsigned": {"age_ts": 1000000},
    }
    assert compute_content_hash(redactable) == "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"


def test_content_hash_ignores_unsigned_signatures_and_hashes() -> None:
    base = compute_content_hash(MESSAGE)
    changed = {**MESSAGE, "unsigned": {"age": 1}, "signatures": {}, "hashes": {"sha256": "other"}}
    assert compute_content_hash(changed) == base
    assert compute_content_hash({**MESSAGE, "content": {"body": "bye"}}) != base


def test_add_and_check_content_hash() -> None:
    hashed = add_content_hash(MESSAGE)
    assert hashed is not MESSAGE and MESSAGE["hashes"] == {"sha256": "placeholder"}
    assert check_content_hash(hashed)
    assert not check_content_hash({**hashed, "content": {"body": "tampered"}})
    assert not check_content_hash(MESSAGE)
    assert not check_content_hash({**hashed, "hashes": {}})
    assert not check_content_hash({**hashed, "hashes": "nope"})
    assert not check_content_hash({**hashed, "hashes": {"sha256": "!!!"}})
    # Padded base64 of the right digest is accepted too.
    padded = hashed["hashes"]["sha256"] + "="
    assert check_content_hash({**hashed, "hashes": {"sha256": padded}})


def _independent_reference_hash(redacted: dict[str, Any]) -> bytes:
    """Reference hash from the spec's Python canonical_json example and hashlib."""
    stripped = {k: v for k, v in redacted.items() if k not in ("signatures", "unsigned")}
    data = json.dumps(stripped, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(data).digest()


@pytest.mark.parametrize("room_version", list(KNOWN_ROOM_VERSIONS.values()), ids=lambda v: f"v{v.identifier}")
def test_reference_hash_matches_independent_computation(room_version: RoomVersion) -> None:
    expected = _independent_reference_hash(prune_event_dict(room_version, MESSAGE))
    assert compute_reference_hash(MESSAGE, room_version) == expected
    event_id = event_id_from_pdu(MESSAGE, room_version)
    if room_version is V3:
        assert event_id == "$" + base64.b64encode(expected).decode().rstrip("=")
    else:
        assert event_id == "$" + base64.urlsafe_b64encode(expected).decode().rstrip("=")
    assert len(event_id) == 44 and "=" not in event_id


def test_v3_and_v4_event_id_alphabets() -> None:
    # Find an event whose hash has + or / in standard base64, then compare alphabets.
    for i in range(200):
        pdu = {**MESSAGE, "depth": i}
        v3_id = event_id_from_pdu(pdu, V3)
        if "+" in v3_id or "/" in v3_id:
            v4_id = event_id_from_pdu(pdu, V4)
            assert v4_id == v3_id.replace("+", "-").replace("/", "_")
            return
    pytest.fail("no event id with + or / found")


def test_event_id_is_stable_under_redaction_and_unsigned() -> None:
    event_id = event_id_from_pdu(MESSAGE, V10)
    assert event_id_from_pdu({**MESSAGE, "content": {}}, V10) == event_id
    assert event_id_from_pdu({**MESSAGE, "unsigned": {"age_ts": 1}}, V10) == event_id
    assert event_id_from_pdu({**MESSAGE, "signatures": {}}, V10) == event_id
    assert event_id_from_pdu(prune_event_dict(V10, MESSAGE), V10) == event_id
    # Protected fields change the id.
    assert event_id_from_pdu({**MESSAGE, "depth": 8}, V10) != event_id
    assert event_id_from_pdu({**MESSAGE, "hashes": {"sha256": "x"}}, V10) != event_id


def test_origin_counts_for_the_id_before_v11_only() -> None:
    with_origin = {**MESSAGE, "origin": "example.org"}
    assert event_id_from_pdu(with_origin, V10) != event_id_from_pdu(MESSAGE, V10)
    assert event_id_from_pdu(with_origin, V11) == event_id_from_pdu(MESSAGE, V11)
