"""Client serialisation and PDU validation."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.core.errors import MatrixError
from homeserver.events.client_format import client_event
from homeserver.events.room_versions import V5, V10, V11, V12, RoomVersion
from homeserver.events.validation import validate_pdu_format, validate_pdu_size_and_fields

PDU: dict[str, Any] = {
    "auth_events": ["$a"],
    "content": {"body": "hi"},
    "depth": 3,
    "hashes": {"sha256": "h"},
    "origin": "x",
    "origin_server_ts": 1000,
    "prev_events": ["$p"],
    "room_id": "!r:x",
    "sender": "@a:x",
    "signatures": {"x": {"ed25519:1": "s"}},
    "type": "m.room.message",
    "unsigned": {"age_ts": 5},
}


# -- client format ----------------------------------------------------------------------------------


def test_client_event_strips_federation_fields() -> None:
    out = client_event(PDU, "$e", unsigned={"age": 10, "transaction_id": "t"})
    assert out == {
        "content": {"body": "hi"},
        "event_id": "$e",
        "origin_server_ts": 1000,
        "room_id": "!r:x",
        "sender": "@a:x",
        "type": "m.room.message",
        "unsigned": {"age": 10, "transaction_id": "t"},
    }


def test_client_event_without_room_id_and_unsigned() -> None:
    out = client_event({**PDU, "state_key": ""}, "$e", include_room_id=False)
    assert "room_id" not in out and "unsigned" not in out
    assert out["state_key"] == ""


def test_v12_create_gets_its_derived_room_id() -> None:
    pdu = {k: v for k, v in PDU.items() if k != "room_id"} | {"type": "m.room.create", "state_key": ""}
    assert client_event(pdu, "$abc")["room_id"] == "!abc"


def test_redacts_is_mirrored_both_ways() -> None:
    old = client_event({**PDU, "type": "m.room.redaction", "content": {"reason": "r"}, "redacts": "$t"}, "$e")
    assert old["redacts"] == "$t" and old["content"] == {"reason": "r", "redacts": "$t"}
    new = client_event({**PDU, "type": "m.room.redaction", "content": {"redacts": "$t"}}, "$e")
    assert new["redacts"] == "$t" and new["content"] == {"redacts": "$t"}
    # A message's content.redacts is just content.
    assert "redacts" not in client_event({**PDU, "content": {"redacts": "$t"}}, "$e")


# -- validation -------------------------------------------------------------------------------------


def _status(pdu: dict[str, Any], room_version: RoomVersion = V10) -> tuple[int, str] | None:
    try:
        validate_pdu_format(pdu, room_version)
    except MatrixError as exc:
        return exc.status, exc.errcode
    return None


def test_valid_pdu_passes() -> None:
    assert _status(PDU) is None
    assert _status({**PDU, "state_key": "", "type": "m.room.name"}) is None


BAD_JSON = (400, "M_BAD_JSON")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": None}, BAD_JSON),
        ({"sender": "alice"}, BAD_JSON),
        ({"content": "x"}, BAD_JSON),
        ({"state_key": 1}, BAD_JSON),
        ({"room_id": "room"}, BAD_JSON),
        ({"origin_server_ts": "1"}, BAD_JSON),
        ({"origin_server_ts": True}, BAD_JSON),
        ({"depth": -1}, BAD_JSON),
        ({"depth": 2**53}, BAD_JSON),
        ({"prev_events": "$p"}, BAD_JSON),
        ({"prev_events": [1]}, BAD_JSON),
        ({"prev_events": [f"$p{i}" for i in range(21)]}, BAD_JSON),
        ({"auth_events": [f"$a{i}" for i in range(11)]}, BAD_JSON),
        ({"hashes": {}}, BAD_JSON),
        ({"signatures": {"x": "s"}}, BAD_JSON),
        ({"unsigned": []}, BAD_JSON),
        ({"content": {"n": 1.5}}, BAD_JSON),
        ({"content": {"n": 2**53}}, BAD_JSON),
        ({"type": "m.room.redaction", "redacts": 5}, BAD_JSON),
        ({"type": "t" * 256}, (413, "M_TOO_LARGE")),
        ({"state_key": "é" * 128}, (413, "M_TOO_LARGE")),  # 256 bytes, 128 code points
        ({"content": {"body": "x" * 65536}}, (413, "M_TOO_LARGE")),
    ],
)
def test_invalid_pdus(change: dict[str, Any], expected: tuple[int, str]) -> None:
    pdu = {k: v for k, v in {**PDU, **change}.items() if v is not None}
    assert _status(pdu) == expected


def test_missing_fields() -> None:
    for field in (
        "type",
        "sender",
        "content",
        "room_id",
        "origin_server_ts",
        "depth",
        "prev_events",
        "hashes",
    ):
        assert _status({k: v for k, v in PDU.items() if k != field}) == BAD_JSON, field


def test_legacy_versions_allow_non_canonical_numbers() -> None:
    assert _status({**PDU, "content": {"n": 1.5}}, V5) is None


def test_redacts_location_by_version() -> None:
    assert _status({**PDU, "type": "m.room.redaction", "content": {"redacts": 5}}, V11) == BAD_JSON
    assert _status({**PDU, "type": "m.room.redaction", "content": {"redacts": 5}}, V10) is None


def test_v12_create_must_not_have_room_id() -> None:
    create = {**PDU, "type": "m.room.create", "state_key": "", "content": {}}
    assert _status(create, V12) == BAD_JSON
    assert _status({k: v for k, v in create.items() if k != "room_id"}, V12) is None
    assert _status({k: v for k, v in create.items() if k != "room_id"}, V11) == BAD_JSON


def test_size_limits_only() -> None:
    validate_pdu_size_and_fields({"type": "t" * 255, "sender": "@a:x"})
    with pytest.raises(MatrixError) as exc:
        validate_pdu_size_and_fields({"event_id": "$" + "e" * 255})
    assert exc.value.status == 413
    with pytest.raises(MatrixError) as exc:
        validate_pdu_size_and_fields({"sender": 5})
    assert exc.value.status == 400
    # Exactly 65536 bytes is allowed, one more is not.
    filler = 65536 - len(b'{"content":{"body":""}}')
    validate_pdu_size_and_fields({"content": {"body": "x" * filler}})
    with pytest.raises(MatrixError) as exc:
        validate_pdu_size_and_fields({"content": {"body": "x" * (filler + 1)}})
    assert exc.value.errcode == "M_TOO_LARGE"
