"""Server keys and the federation version, as another server sees them (keys_server.yaml,
keys_query.yaml, version.yaml). Needs the `federation` resource on the tested listener (both our
launcher and a Synapse listener with `names: [client, federation]` serve it)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from .harness import Homeserver
from .spec_schema import assert_error, assert_matches_spec


def own_keys(hs: Homeserver) -> dict[str, Any]:
    resp = hs.client().get("/_matrix/key/v2/server")
    if resp.status == 404 and hs.is_synapse:
        pytest.skip("the tested Synapse listener does not serve the federation resource")
    assert resp.status == 200, resp.describe()
    assert_matches_spec("keys_server.yaml", "/server", "GET", 200, resp.body, api="server-server")
    return dict(resp.body)


def test_server_keys_are_self_signed_and_current(hs: Homeserver) -> None:
    body = own_keys(hs)
    server_name = body["server_name"]
    assert body["valid_until_ts"] > time.time() * 1000
    assert body["verify_keys"]
    for key_id, entry in body["verify_keys"].items():
        verify_key = decode_verify_key_bytes(key_id, decode_base64(entry["key"]))
        verify_signed_json(body, server_name, verify_key)


def test_notary_returns_own_keys(hs: Homeserver) -> None:
    server_name = own_keys(hs)["server_name"]
    resp = hs.client().post("/_matrix/key/v2/query", {"server_keys": {server_name: {}}})
    assert resp.status == 200, resp.describe()
    assert_matches_spec("keys_query.yaml", "/query", "POST", 200, resp.body, api="server-server")
    assert [r["server_name"] for r in resp.body["server_keys"]] == [server_name]
    resp = hs.client().post("/_matrix/key/v2/query", {"server_keys": {}})
    assert (resp.status, resp.body) == (200, {"server_keys": []})


def test_federation_requests_need_a_signature(hs: Homeserver) -> None:
    own_keys(hs)
    resp = hs.client().get("/_matrix/federation/v1/query/profile", params={"user_id": "@a:example.org"})
    assert_error(resp, 401, "M_UNAUTHORIZED")


def test_federation_version(hs: Homeserver) -> None:
    own_keys(hs)
    resp = hs.client().get("/_matrix/federation/v1/version")
    assert resp.status == 200, resp.describe()
    assert_matches_spec("version.yaml", "/version", "GET", 200, resp.body, api="server-server")
