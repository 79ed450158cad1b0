"""Room version 12 pieces that are not auth rules (those are in test_auth_rules.py): room ids derived
from the create event's reference hash, identifiers without a server name, redaction, creation
defaults."""

from __future__ import annotations

import hashlib
from base64 import urlsafe_b64encode
from typing import Any

from signedjson.key import decode_signing_key_base64

from homeserver.core import ids
from homeserver.crypto.canonical import encode_canonical_json
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.builder import build_event
from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import V11, V12
from homeserver.services.room_presets import default_power_levels
from homeserver.services.room_upgrades import _power_levels_for_creators

KEY = ServerSigningKey.from_signing_key(
    decode_signing_key_base64("ed25519", "a_test", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
)
ALICE = "@alice:example.org"
BOB = "@bob:example.org"


def _create(**content: Any) -> Any:
    return build_event(
        V12,
        room_id=None,
        sender=ALICE,
        type="m.room.create",
        content={"room_version": "12", **content},
        state_key="",
        prev_event_ids=[],
        auth_event_ids=[],
        depth=1,
        origin_server_ts=1_700_000_000_000,
        server_name="example.org",
        signing_key=KEY,
    )


def test_room_id_is_the_reference_hash_of_the_create_event() -> None:
    create = _create(additional_creators=[BOB])
    # Reference hash: SHA-256 of the canonical JSON of the redacted event without signatures,
    # unsigned; "$"/"!" + URL-safe unpadded base64.
    redacted = prune_event_dict(V12, create.pdu)
    redacted.pop("signatures", None)
    digest = hashlib.sha256(encode_canonical_json(redacted)).digest()
    expected = urlsafe_b64encode(digest).decode().rstrip("=")
    assert create.event_id == "$" + expected
    assert create.room_id == "!" + expected
    assert "room_id" not in create.pdu
    assert len(create.room_id) == 44 and ":" not in create.room_id


def test_v12_room_ids_are_valid_and_name_no_server() -> None:
    room_id = _create().room_id
    assert ids.is_valid_room_id(room_id)
    assert ids.server_of(room_id) == ""
    assert ids.server_of("!abc:example.org") == "example.org"
    assert ids.server_of("@u:example.org:8448") == "example.org:8448"
    assert not ids.is_valid_room_id("!")
    assert not ids.is_valid_room_id("$" + room_id[1:])


def test_redaction_keeps_the_whole_create_content_including_additional_creators() -> None:
    create = _create(additional_creators=[BOB], type="m.space", extra={"x": 1})
    pruned = prune_event_dict(V12, create.pdu)
    assert pruned["content"] == create.pdu["content"]
    assert "room_id" not in pruned
    # Redaction rules of v12 are those of v11.
    assert V12.redaction is V11.redaction
    power = {
        "type": "m.room.power_levels",
        "room_id": create.room_id,
        "sender": ALICE,
        "state_key": "",
        "content": {"users": {BOB: 50}, "invite": 10, "events": {"m.room.name": 50}, "other": 1},
    }
    assert prune_event_dict(V12, power)["content"] == {
        "users": {BOB: 50},
        "invite": 10,
        "events": {"m.room.name": 50},
    }


def test_default_power_levels_for_privileged_creators() -> None:
    v11 = default_power_levels(ALICE, [BOB], True)
    assert v11["users"] == {ALICE: 100, BOB: 100}
    assert v11["events"]["m.room.tombstone"] == 100
    v12 = default_power_levels(ALICE, [BOB], True, privileged_creators=True)
    assert v12["users"] == {}
    assert v12["events"]["m.room.tombstone"] == 150 > v12["state_default"]


def test_upgrade_power_levels_for_creators() -> None:
    base = {"users": {ALICE: 100, BOB: 50}, "state_default": 50, "events": {"m.room.tombstone": 50}}
    # Into v12: the new creators are dropped, the tombstone level is raised above state_default.
    to12 = _power_levels_for_creators(base, set(), V12, {ALICE})
    assert to12["users"] == {BOB: 50}
    assert to12["events"]["m.room.tombstone"] == 150
    # From v12 into v11: the old creators (unlisted) become admins.
    to11 = _power_levels_for_creators({"users": {BOB: 50}}, {ALICE}, V11, {ALICE})
    assert to11["users"] == {BOB: 50, ALICE: 100}
    # v12 to v12: an old creator who is not a new creator keeps admin rights.
    again = _power_levels_for_creators({"users": {}}, {ALICE, BOB}, V12, {BOB})
    assert again["users"] == {ALICE: 100}
    assert base["users"] == {ALICE: 100, BOB: 50}  # input untouched
