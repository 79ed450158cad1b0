"""JSON and event signing: the appendices' test vectors, verification failures, signature requirements."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from nacl.signing import SigningKey
from signedjson.key import decode_signing_key_base64
from unpaddedbase64 import encode_base64

from homeserver.crypto.event_signing import (
    hash_and_sign_event,
    required_signers,
    sign_event,
    verify_event_signature,
)
from homeserver.crypto.hashes import event_id_from_pdu, redacted_signing_bytes
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.signing import (
    SignatureError,
    sign_json,
    verify_ed25519_signature,
    verify_json_signature,
)
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, V9, V10, V11

# appendices.md "Cryptographic Test Vectors".
SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


@pytest.fixture
def key() -> ServerSigningKey:
    return ServerSigningKey.from_signing_key(decode_signing_key_base64("ed25519", "1", SEED))


def other_key(version: str = "2") -> ServerSigningKey:
    return ServerSigningKey.from_signing_key(
        decode_signing_key_base64("ed25519", version, encode_base64(b"\x01" * 32))
    )


def test_sign_empty_object(key: ServerSigningKey) -> None:
    assert sign_json({}, "domain", key) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtT"
                "dGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_sign_object_with_data(key: ServerSigningKey) -> None:
    obj = {"one": 1, "two": "Two"}
    signed = sign_json(obj, "domain", key)
    assert signed == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL"
                "53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }
    assert obj == {"one": 1, "two": "Two"}  # input untouched


def test_unsigned_and_existing_signatures_are_not_signed(key: ServerSigningKey) -> None:
    obj = {"one": 1, "two": "Two", "unsigned": {"age_ts": 5}, "signatures": {"other": {"ed25519:x": "abc"}}}
    signed = sign_json(obj, "domain", key)
    assert signed["signatures"]["domain"]["ed25519:1"].startswith("KqmLSbO39")
    assert signed["signatures"]["other"] == {"ed25519:x": "abc"}
    assert signed["unsigned"] == {"age_ts": 5}
    assert obj["signatures"] == {"other": {"ed25519:x": "abc"}}  # nested dict copied, not mutated
    # Co-signing with a second key of the same entity leaves the first signed copy untouched.
    twice = sign_json(signed, "domain", other_key())
    assert set(twice["signatures"]["domain"]) == {"ed25519:1", "ed25519:2"}
    assert set(signed["signatures"]["domain"]) == {"ed25519:1"}


def test_verify_round_trip_and_failures(key: ServerSigningKey) -> None:
    signed = sign_json({"a": 1, "unsigned": {"x": 1}}, "domain", key)
    verify_json_signature(signed, "domain", "ed25519:1", key.verify_key)
    # unsigned may change in transit
    verify_json_signature({**signed, "unsigned": {"y": 2}}, "domain", "ed25519:1", key.verify_key)

    with pytest.raises(SignatureError):
        verify_json_signature({**signed, "a": 2}, "domain", "ed25519:1", key.verify_key)
    with pytest.raises(SignatureError):
        verify_json_signature(signed, "domain", "ed25519:1", other_key().verify_key)
    with pytest.raises(SignatureError):
        verify_json_signature(signed, "elsewhere", "ed25519:1", key.verify_key)
    with pytest.raises(SignatureError):
        verify_json_signature(signed, "domain", "ed25519:2", key.verify_key)
    with pytest.raises(SignatureError):
        verify_json_signature({"a": 1}, "domain", "ed25519:1", key.verify_key)
    bad = copy.deepcopy(signed)
    bad["signatures"]["domain"]["ed25519:1"] = "!!notbase64!!"
    with pytest.raises(SignatureError):
        verify_json_signature(bad, "domain", "ed25519:1", key.verify_key)
    bad["signatures"]["domain"]["ed25519:1"] = 42
    with pytest.raises(SignatureError):
        verify_json_signature(bad, "domain", "ed25519:1", key.verify_key)


def test_verify_ed25519_signature_device_keys() -> None:
    device_key = SigningKey(b"\x07" * 32)
    public_b64 = encode_base64(device_key.verify_key.encode())
    device_keys = {
        "user_id": "@alice:example.org",
        "device_id": "JLAFKJWSCS",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {"ed25519:JLAFKJWSCS": public_b64},
    }
    signing = ServerSigningKey.from_signing_key(
        decode_signing_key_base64("ed25519", "JLAFKJWSCS", encode_base64(b"\x07" * 32))
    )
    signed = sign_json(device_keys, "@alice:example.org", signing)
    verify_ed25519_signature(signed, "@alice:example.org", "ed25519:JLAFKJWSCS", public_b64)

    with pytest.raises(SignatureError):
        verify_ed25519_signature(
            {**signed, "device_id": "X"}, "@alice:example.org", "ed25519:JLAFKJWSCS", public_b64
        )
    with pytest.raises(SignatureError):
        verify_ed25519_signature(signed, "@alice:example.org", "curve25519:JLAFKJWSCS", public_b64)
    # Only ed25519 key ids are accepted, even when a valid signature sits under another algorithm.
    odd = copy.deepcopy(signed)
    odd["signatures"]["@alice:example.org"]["curve25519:JLAFKJWSCS"] = signed["signatures"][
        "@alice:example.org"
    ]["ed25519:JLAFKJWSCS"]
    with pytest.raises(SignatureError):
        verify_ed25519_signature(odd, "@alice:example.org", "curve25519:JLAFKJWSCS", public_b64)
    with pytest.raises(SignatureError):
        verify_ed25519_signature(signed, "@alice:example.org", "ed25519:JLAFKJWSCS", "short")
    with pytest.raises(SignatureError):
        verify_ed25519_signature(signed, "@bob:example.org", "ed25519:JLAFKJWSCS", public_b64)


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

REDACTABLE_EVENT: dict[str, Any] = {
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


# The vectors protect `origin`, so they hold for the pre-v11 redaction algorithm.
@pytest.mark.parametrize(
    ("event", "content_hash", "signature"),
    [
        (
            MINIMAL_EVENT,
            "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
            "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
        ),
        (
            REDACTABLE_EVENT,
            "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g",
            "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA",
        ),
    ],
)
def test_event_signing_vectors(
    key: ServerSigningKey, event: dict[str, Any], content_hash: str, signature: str
) -> None:
    signed, event_id = hash_and_sign_event(V10, event, "domain", key)
    assert signed["hashes"] == {"sha256": content_hash}
    assert signed["signatures"] == {"domain": {"ed25519:1": signature}}
    assert signed["unsigned"] == {"age_ts": 1000000}
    assert {k: v for k, v in signed.items() if k not in ("hashes", "signatures")} == {
        k: v for k, v in event.items() if k not in ("hashes", "signatures")
    }
    assert event_id == event_id_from_pdu(signed, V10)
    verify_event_signature(V10, signed, "domain", "ed25519:1", key.verify_key)


def test_v11_signature_differs_because_origin_is_unprotected(key: ServerSigningKey) -> None:
    v10_signed, _ = hash_and_sign_event(V10, MINIMAL_EVENT, "domain", key)
    v11_signed, _ = hash_and_sign_event(V11, MINIMAL_EVENT, "domain", key)
    assert v10_signed["hashes"] == v11_signed["hashes"]
    assert v10_signed["signatures"] != v11_signed["signatures"]
    # In v11 `origin` is redacted away, so changing it keeps the signature valid (hash check catches it).
    verify_event_signature(V11, {**v11_signed, "origin": "evil"}, "domain", "ed25519:1", key.verify_key)
    with pytest.raises(SignatureError):
        verify_event_signature(V10, {**v10_signed, "origin": "evil"}, "domain", "ed25519:1", key.verify_key)


def test_event_signature_survives_redaction_but_not_tampering(key: ServerSigningKey) -> None:
    signed, _ = hash_and_sign_event(V10, REDACTABLE_EVENT, "domain", key)
    # A redacted copy (content stripped) still verifies: signatures cover the redacted form.
    verify_event_signature(V10, {**signed, "content": {}}, "domain", "ed25519:1", key.verify_key)
    with pytest.raises(SignatureError):
        verify_event_signature(V10, {**signed, "sender": "@v:domain"}, "domain", "ed25519:1", key.verify_key)
    with pytest.raises(SignatureError):
        verify_event_signature(
            V10, {**signed, "hashes": {"sha256": "x"}}, "domain", "ed25519:1", key.verify_key
        )
    data = redacted_signing_bytes(signed, V10)
    verify_event_signature(V10, signed, "domain", "ed25519:1", key.verify_key, signing_data=data)


def test_sign_event_adds_second_signature(key: ServerSigningKey) -> None:
    signed, event_id = hash_and_sign_event(V10, MINIMAL_EVENT, "domain", key)
    second = other_key()
    cosigned = sign_event(V10, signed, "resident.example", second)
    verify_event_signature(V10, cosigned, "domain", "ed25519:1", key.verify_key)
    verify_event_signature(V10, cosigned, "resident.example", "ed25519:2", second.verify_key)
    assert event_id_from_pdu(cosigned, V10) == event_id  # signatures are not part of the event id
    assert "resident.example" not in signed["signatures"]


@pytest.mark.parametrize(
    ("pdu", "room_version", "expected"),
    [
        ({"type": "m.room.message", "sender": "@a:one", "content": {}}, V10, {"one"}),
        (
            {
                "type": "m.room.member",
                "sender": "@a:one",
                "state_key": "@b:two",
                "content": {"membership": "invite"},
            },
            V10,
            {"one"},
        ),
        (
            {
                "type": "m.room.member",
                "sender": "@a:one",
                "state_key": "@b:two",
                "content": {"membership": "invite", "third_party_invite": {"signed": {}}},
            },
            V10,
            set(),
        ),
        (
            {
                "type": "m.room.member",
                "sender": "@a:one",
                "state_key": "@a:one",
                "content": {"membership": "join", "join_authorised_via_users_server": "@r:resident"},
            },
            V9,
            {"one", "resident"},
        ),
        (
            {
                "type": "m.room.member",
                "sender": "@a:one",
                "state_key": "@a:one",
                "content": {"membership": "join", "join_authorised_via_users_server": "@r:resident"},
            },
            KNOWN_ROOM_VERSIONS["7"],
            {"one"},
        ),
    ],
)
def test_required_signers(pdu: dict[str, Any], room_version: Any, expected: set[str]) -> None:
    assert required_signers(room_version, pdu) == expected
