"""Endpoints Element Web and matrix-js-sdk call at startup next to the E2EE ones (observed against
Synapse): GET /thirdparty/protocols and GET /voip/turnServer."""

from __future__ import annotations

import json

from .client import V3, q
from .e2ee_support import OTK_ALG, CrossSigning, new_device_keys, random_key
from .harness import Homeserver, User
from .spec_schema import assert_error, assert_response_matches_spec

UNSTABLE = "/_matrix/client/unstable"


def test_thirdparty_protocols(user: User) -> None:
    body = assert_response_matches_spec(
        user.client.get(f"{V3}/thirdparty/protocols"), "third_party_lookup.yaml", "/thirdparty/protocols"
    )
    assert isinstance(body, dict)


def test_thirdparty_unknown_protocol(user: User) -> None:
    resp = user.client.get(f"{V3}/thirdparty/protocol/org.example.nothing")
    assert resp.status == 404, resp.describe()


def test_turn_server(hs: Homeserver, user: User) -> None:
    resp = user.client.get(f"{V3}/voip/turnServer")
    assert resp.status == 200, resp.describe()
    if resp.body == {}:
        # No TURN server configured: Synapse (and we) answer an empty object, which clients take as
        # "no TURN" (the spec's schema has no shape for that case).
        return
    assert_response_matches_spec(resp, "voip.yaml", "/voip/turnServer")


def test_startup_endpoints_need_a_token(hs: Homeserver) -> None:
    for path in ("/thirdparty/protocols", "/voip/turnServer"):
        assert_error(hs.client().get(f"{V3}{path}"), 401, "M_MISSING_TOKEN")


def test_element_web_startup_sequence(hs: Homeserver, user: User) -> None:
    """What Element Web calls after login, in order, up to its first key upload and cross-signing
    bootstrap (observed against Synapse)."""
    client = user.client
    assert client.get("/_matrix/client/versions").status == 200
    assert_response_matches_spec(
        client.get(f"{V3}/thirdparty/protocols"), "third_party_lookup.yaml", "/thirdparty/protocols"
    )
    assert_error(client.get(f"{V3}/room_keys/version"), 404, "M_NOT_FOUND")
    assert client.get(f"{V3}/voip/turnServer").status == 200
    assert client.get(f"{V3}/capabilities").status == 200
    body = assert_response_matches_spec(
        client.post(f"{V3}/keys/query", {"device_keys": {user.user_id: []}}), "keys.yaml", "/keys/query"
    )
    assert body["device_keys"].get(user.user_id, {}) == {}
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 20}}}
    resp = client.post(f"{V3}/user/{q(user.user_id)}/filter", lazy)
    assert resp.status == 200, resp.describe()
    sync = client.get(
        f"{V3}/sync",
        params={"filter": json.dumps(lazy), "timeout": 0, "org.matrix.msc4222.use_state_after": "true"},
    )
    sync_body = assert_response_matches_spec(sync, "sync.yaml", "/sync")
    assert "device_unused_fallback_key_types" in sync_body
    device = new_device_keys(user)
    upload = client.post(
        f"{V3}/keys/upload", {"device_keys": device.signed(), "one_time_keys": device.one_time_keys(50)}
    )
    assert (
        assert_response_matches_spec(upload, "keys.yaml", "/keys/upload")["one_time_key_counts"][OTK_ALG]
        == 50
    )
    keys = CrossSigning(user.user_id)
    assert client.post(f"{UNSTABLE}/keys/device_signing/upload", keys.upload_body()).status == 200
    assert client.post(f"{V3}/keys/device_signing/upload", keys.upload_body()).status == 200
    ssk_id = f"ed25519:{keys.self_signing.public}"
    signed_device = keys.self_signing.sign(device.signed(), user.user_id, ssk_id)
    signed_master = device.ed25519.sign(keys.master_key(), user.user_id, device.key_id)
    resp = client.post(
        f"{V3}/keys/signatures/upload",
        {user.user_id: {user.device_id: signed_device, keys.master.public: signed_master}},
    )
    assert not assert_response_matches_spec(resp, "cross_signing.yaml", "/keys/signatures/upload").get(
        "failures"
    )
    backup = client.post(
        f"{V3}/room_keys/version",
        {"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": random_key()}},
    )
    assert assert_response_matches_spec(backup, "key_backup.yaml", "/room_keys/version")["version"]
    assert client.get(f"{V3}/devices").status == 200
