"""End-to-end encryption keys across two server processes over TLS (the harness of
test_federation_tls.py): a client of A downloads and claims the keys of a user on B. A signs its
/user/keys/query and /user/keys/claim requests, B checks them against A's key, answers from its
own tables, and A hands the answer to its client; a dead server shows up in `failures`."""

from __future__ import annotations

import urllib.parse
from typing import Any

from synapse_compat_tests.client import register_user

from ..api.test_e2ee import Device
from .test_federation_tls import Fed, pair  # noqa: F401  (the module-scoped two-server fixture)

V3 = "/_matrix/client/v3"


def _ok(resp: Any) -> Any:
    assert resp.status == 200, resp.describe()
    return resp.body


def test_keys_of_a_user_on_another_server(pair: tuple[Fed, Fed]) -> None:  # noqa: F811
    a, b = pair
    bob, bob_token, bob_device = register_user(b.client, b.server.shared_secret, "keybob")
    on_b = b.client.with_token(bob_token)
    device = Device(bob, bob_device)
    _ok(
        on_b.post(
            f"{V3}/keys/upload",
            {
                "device_keys": device.device_keys(),
                "one_time_keys": device.otks(1),
                "fallback_keys": device.otks(1, fallback=True),
            },
        )
    )
    _, alice_token, _ = register_user(a.client, a.server.shared_secret, "keyalice")
    on_a = a.client.with_token(alice_token)

    body = _ok(on_a.post(f"{V3}/keys/query", {"device_keys": {bob: []}}))
    assert body["failures"] == {}
    keys = body["device_keys"][bob][bob_device]
    assert {k: v for k, v in keys.items() if k != "unsigned"} == device.device_keys()

    claim = {"one_time_keys": {bob: {bob_device: "signed_curve25519"}}}
    first = _ok(on_a.post(f"{V3}/keys/claim", claim))
    second = _ok(on_a.post(f"{V3}/keys/claim", claim))
    assert first["failures"] == {} == second["failures"]
    [first_id] = first["one_time_keys"][bob][bob_device]
    [second_id] = second["one_time_keys"][bob][bob_device]
    assert first_id != second_id  # the one-time key once, then the fallback key
    assert second["one_time_keys"][bob][bob_device][second_id]["fallback"] is True

    # B's own view: the device list A would resync from.
    path = f"/_matrix/federation/v1/user/devices/{urllib.parse.quote(bob)}"
    status, _ = b.https("GET", path)
    assert status == 401  # unsigned

    # A server that cannot be reached is a failure of its own; B's answer still comes.
    body = _ok(
        on_a.post(f"{V3}/keys/query", {"device_keys": {bob: [], "@x:127.0.0.1:1": []}, "timeout": 5000})
    )
    assert set(body["failures"]) == {"127.0.0.1:1"}
    assert bob_device in body["device_keys"][bob]
