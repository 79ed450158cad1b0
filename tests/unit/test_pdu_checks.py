"""federation/pdu_checks.check_pdu: format, size, signatures (incl. restricted joins), content hash."""

from __future__ import annotations

from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.core.errors import MatrixError
from homeserver.crypto.event_signing import hash_and_sign_event, sign_event
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.room_versions import V4, V5, V9, V10, V11, RoomVersion
from homeserver.federation.pdu_checks import PduSignatureError, check_pdu

TS = 1_700_000_000_000
REMOTE = "remote.test"
OTHER = "other.test"


def _key(version: str) -> ServerSigningKey:
    return ServerSigningKey.from_signing_key(generate_signing_key(version))


REMOTE_KEY = _key("r1")
OTHER_KEY = _key("o1")


def _keyring(valid_until: int = TS + 1000, *extra: ServerVerifyKey) -> InMemoryKeyring:
    return InMemoryKeyring(
        (
            ServerVerifyKey(REMOTE, REMOTE_KEY.key_id, REMOTE_KEY.verify_key, valid_until),
            ServerVerifyKey(OTHER, OTHER_KEY.key_id, OTHER_KEY.verify_key, valid_until),
            *extra,
        )
    )


def _pdu(**overrides: Any) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "room_id": "!room:remote.test",
        "sender": "@alice:remote.test",
        "origin_server_ts": TS,
        "type": "m.room.message",
        "content": {"body": "hi", "msgtype": "m.text"},
        "prev_events": ["$prev"],
        "auth_events": ["$create", "$power", "$member"],
        "depth": 5,
    }
    pdu.update(overrides)
    return pdu


def _signed(
    rv: RoomVersion = V10, key: ServerSigningKey = REMOTE_KEY, server: str = REMOTE, **kw: Any
) -> tuple[dict[str, Any], str]:
    return hash_and_sign_event(rv, _pdu(**kw), server, key)


async def test_valid_pdu_returns_event_with_its_id() -> None:
    pdu, event_id = _signed()
    event = await check_pdu(pdu, V10, _keyring())
    assert event.event_id == event_id
    assert event.content["body"] == "hi"


async def test_missing_signature_rejected() -> None:
    pdu, _ = _signed()
    pdu["signatures"] = {}
    with pytest.raises(PduSignatureError) as info:
        await check_pdu(pdu, V10, _keyring())
    assert info.value.status == 403


async def test_forged_signature_rejected() -> None:
    # Signed by another key claiming to be the remote's key id.
    forger = ServerSigningKey.from_signing_key(generate_signing_key("r1"))
    pdu, _ = hash_and_sign_event(V10, _pdu(), REMOTE, forger)
    with pytest.raises(PduSignatureError):
        await check_pdu(pdu, V10, _keyring())


async def test_signature_by_wrong_server_rejected() -> None:
    # other.test signs an event whose sender is on remote.test.
    pdu, _ = _signed(key=OTHER_KEY, server=OTHER)
    with pytest.raises(PduSignatureError):
        await check_pdu(pdu, V10, _keyring())


async def test_unknown_key_rejected() -> None:
    pdu, _ = _signed()
    with pytest.raises(PduSignatureError):
        await check_pdu(pdu, V10, InMemoryKeyring())


async def test_tampered_signed_field_rejected() -> None:
    pdu, _ = _signed()
    pdu["depth"] = 6  # part of the redacted (signed) form
    with pytest.raises(PduSignatureError):
        await check_pdu(pdu, V10, _keyring())


async def test_bad_key_hidden_behind_good_key_rejected() -> None:
    pdu, _ = _signed()
    second = _key("r2")
    pdu["signatures"][REMOTE]["ed25519:r2"] = pdu["signatures"][REMOTE][REMOTE_KEY.key_id]
    ring = _keyring(TS + 1000, ServerVerifyKey(REMOTE, second.key_id, second.verify_key, TS + 1000))
    with pytest.raises(PduSignatureError):
        await check_pdu(pdu, V10, ring)


async def test_key_validity_enforced_from_v5() -> None:
    pdu, _ = _signed(rv=V5)
    expired = _keyring(TS - 1)
    with pytest.raises(PduSignatureError):
        await check_pdu(pdu, V5, expired)
    # v4 did not enforce key validity.
    pdu4, _ = _signed(rv=V4)
    assert (await check_pdu(pdu4, V4, expired)).sender == "@alice:remote.test"


async def test_content_hash_mismatch_returns_redacted_event() -> None:
    pdu, event_id = _signed()
    pdu["content"] = {"body": "tampered", "msgtype": "m.text"}  # content is not signed for messages
    event = await check_pdu(pdu, V10, _keyring())
    assert event.event_id == event_id
    assert dict(event.content) == {}


async def test_restricted_join_needs_authorising_server_signature() -> None:
    content = {"membership": "join", "join_authorised_via_users_server": "@bob:other.test"}
    pdu, _ = _signed(rv=V9, type="m.room.member", state_key="@alice:remote.test", content=content)
    with pytest.raises(PduSignatureError, match=r"other\.test"):
        await check_pdu(pdu, V9, _keyring())
    countersigned = sign_event(V9, pdu, OTHER, OTHER_KEY)
    event = await check_pdu(countersigned, V9, _keyring())
    assert event.membership == "join"


async def test_third_party_invite_does_not_need_sender_server() -> None:
    content = {
        "membership": "invite",
        "third_party_invite": {
            "display_name": "x",
            "signed": {"mxid": "@c:x", "token": "t", "signatures": {}},
        },
    }
    pdu, _ = hash_and_sign_event(
        V10,
        _pdu(type="m.room.member", state_key="@c:x", sender="@alice:elsewhere.test", content=content),
        OTHER,
        OTHER_KEY,
    )
    event = await check_pdu(pdu, V10, _keyring())
    assert event.membership == "invite"


@pytest.mark.parametrize(
    "change",
    [
        {"depth": -1},
        {"depth": "5"},
        {"sender": "not-a-user"},
        {"room_id": "nope"},
        {"prev_events": "$x"},
        {"auth_events": [f"$a{i}" for i in range(11)]},
        {"origin_server_ts": 1.5},
        {"content": []},
    ],
)
async def test_malformed_pdus_rejected(change: dict[str, Any]) -> None:
    pdu, _ = _signed()
    pdu.update(change)
    with pytest.raises(MatrixError) as info:
        await check_pdu(pdu, V10, _keyring())
    assert info.value.errcode == "M_BAD_JSON"


async def test_oversized_pdu_rejected() -> None:
    pdu, _ = _signed(content={"body": "x" * 70_000, "msgtype": "m.text"})
    with pytest.raises(MatrixError) as info:
        await check_pdu(pdu, V10, _keyring())
    assert info.value.errcode == "M_TOO_LARGE"


async def test_oversized_field_rejected() -> None:
    pdu, _ = _signed(type="x" * 256)
    with pytest.raises(MatrixError) as info:
        await check_pdu(pdu, V10, _keyring())
    assert info.value.errcode == "M_TOO_LARGE"


async def test_untrusted_unsigned_is_dropped() -> None:
    pdu, _ = _signed(rv=V11)
    pdu["unsigned"] = {"redacted_because": {"x": 1}, "age": 5}
    event = await check_pdu(pdu, V11, _keyring())
    assert "unsigned" not in event.pdu
    invite, _ = _signed(
        rv=V11, type="m.room.member", state_key="@z:local.test", content={"membership": "invite"}
    )
    invite["unsigned"] = {"invite_room_state": [{"type": "m.room.name"}], "other": 1}
    event = await check_pdu(invite, V11, _keyring())
    assert dict(event.unsigned) == {"invite_room_state": [{"type": "m.room.name"}]}


async def test_non_object_rejected() -> None:
    with pytest.raises(MatrixError):
        await check_pdu([], V10, _keyring())  # type: ignore[arg-type]
