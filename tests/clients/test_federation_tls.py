"""Two homeservers as processes, federating over TLS on loopback.

Each runs a plain-HTTP client listener and a Synapse-style federation listener
(`tls: true`, `tls_certificate_path`, `tls_private_key_path`) with a certificate from a throwaway
CA made here with `openssl`; each trusts only that CA (`federation_custom_ca_list`) and allows
loopback (`ip_range_whitelist`). Server names carry explicit ports, so no DNS or .well-known is
involved: A is `localhost:PORT`, B the IP literal `127.0.0.1:PORT`.

Checked: A serves and notarises keys (fetching B's over TLS and verifying them); a client of A
reads the profile of a user on B and resolves an alias on B (B authenticates A's X-Matrix
signature by fetching A's key); B refuses a forged signature with 401; a dead server gives a
client 502 rather than a hang; a client of A downloads (and thumbnails) media uploaded on B,
fetched by A over the authenticated federation media API. Needs `openssl` (tests/run.sh installs
it).
"""

from __future__ import annotations

import http.client
import io
import json
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from signedjson.key import decode_verify_key_bytes, generate_signing_key
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import sign_request
from synapse_compat_tests.client import MatrixClient, q, register_user
from synapse_compat_tests.launcher import LaunchedServer, free_port, launch

from .federation_harness import make_ca_and_leaf


@dataclass
class Fed:
    name: str  # server name
    port: int  # federation (TLS) port
    server: LaunchedServer
    ca: Path

    def https(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A request to the federation listener, checking its certificate against the test CA."""
        context = ssl.create_default_context(cafile=str(self.ca))
        conn = http.client.HTTPSConnection("localhost", self.port, timeout=30, context=context)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(
                method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
            )
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    @property
    def client(self) -> MatrixClient:
        return MatrixClient(self.server.base_url)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fed, Fed]]:
    certs = tmp_path_factory.mktemp("certs")
    ca, chain, key = make_ca_and_leaf(certs)
    port_a, port_b = free_port(), free_port()
    name_a, name_b = f"localhost:{port_a}", f"127.0.0.1:{port_b}"
    launched: list[Fed] = []
    try:
        for name, port in ((name_a, port_a), (name_b, port_b)):
            overrides = {
                "server_name": name,
                "tls_certificate_path": str(chain),
                "tls_private_key_path": str(key),
                "federation_custom_ca_list": [str(ca)],
                "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
                "federation_domain_whitelist": [name_a, name_b, "127.0.0.1:1"],
                "trusted_key_servers": [],
            }
            fed_listener = {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "resources": [{"names": ["federation"]}],
            }
            server = launch(
                "sqlite",
                tmp_path_factory.mktemp(name.replace(":", "_")),
                overrides=overrides,
                listener_overrides={"resources": [{"names": ["client", "media"]}]},
                extra_listeners=[fed_listener],
            )
            launched.append(Fed(name, port, server, ca))
        yield launched[0], launched[1]
    finally:
        for fed in launched:
            fed.server.stop()


def verify_key_of(fed: Fed) -> tuple[str, Any]:
    status, body = fed.https("GET", "/_matrix/key/v2/server")
    assert status == 200, body
    key_id, entry = next(iter(body["verify_keys"].items()))
    return key_id, decode_verify_key_bytes(key_id, decode_base64(entry["key"]))


def test_key_server_and_notary(pair: tuple[Fed, Fed]) -> None:
    a, b = pair
    status, own = a.https("GET", "/_matrix/key/v2/server")
    assert status == 200 and own["server_name"] == a.name
    _, key_a = verify_key_of(a)
    verify_signed_json(own, a.name, key_a)
    assert own["old_verify_keys"] == {}
    # A, as a notary, fetches B's keys over TLS, checks them and countersigns.
    status, body = a.https("GET", f"/_matrix/key/v2/query/{q(b.name)}")
    assert status == 200, body
    [response] = body["server_keys"]
    assert response["server_name"] == b.name
    key_id_b, key_b = verify_key_of(b)
    assert key_id_b in response["verify_keys"]
    verify_signed_json(response, b.name, key_b)
    verify_signed_json(response, a.name, key_a)
    # the batch form, from B's side
    status, body = b.https("POST", "/_matrix/key/v2/query", {"server_keys": {a.name: {}}})
    assert status == 200 and [r["server_name"] for r in body["server_keys"]] == [a.name]


def test_federation_version(pair: tuple[Fed, Fed]) -> None:
    status, body = pair[1].https("GET", "/_matrix/federation/v1/version")
    assert status == 200 and isinstance(body["server"]["name"], str)


def test_remote_profile_and_alias(pair: tuple[Fed, Fed]) -> None:
    a, b = pair
    bob, bob_token, _ = register_user(b.client, b.server.shared_secret, "bob", displayname="Bob on B")
    assert bob == f"@bob:{b.name}"
    _, alice_token, _ = register_user(a.client, a.server.shared_secret, "alice")
    on_a = a.client.with_token(alice_token)

    resp = on_a.get(f"/_matrix/client/v3/profile/{q(bob)}")
    assert resp.status == 200, resp.describe()
    assert resp.body == {"displayname": "Bob on B"}
    resp = on_a.get(f"/_matrix/client/v3/profile/{q(bob)}/displayname")
    assert (resp.status, resp.body) == (200, {"displayname": "Bob on B"})
    resp = on_a.get(f"/_matrix/client/v3/profile/{q('@nobody:' + b.name)}")
    assert (resp.status, resp.body["errcode"]) == (404, "M_NOT_FOUND")

    on_b = b.client.with_token(bob_token)
    alias = f"#lobby:{b.name}"
    resp = on_b.post("/_matrix/client/v3/createRoom", {"room_alias_name": "lobby"})
    assert resp.status == 200, resp.describe()
    room_id = resp.body["room_id"]
    resp = on_a.get(f"/_matrix/client/v3/directory/room/{q(alias)}")
    assert resp.status == 200, resp.describe()
    assert resp.body["room_id"] == room_id and b.name in resp.body["servers"]
    resp = on_a.get(f"/_matrix/client/v3/directory/room/{q('#missing:' + b.name)}")
    assert (resp.status, resp.body["errcode"]) == (404, "M_NOT_FOUND")


def test_forged_signature_is_refused(pair: tuple[Fed, Fed]) -> None:
    a, b = pair
    key_id_a, _ = verify_key_of(a)
    # A key that claims A's key id but is not A's key.
    forged = ServerSigningKey.from_signing_key(generate_signing_key(key_id_a.split(":", 1)[1]))
    uri = "/_matrix/federation/v1/query/profile?" + urllib.parse.urlencode({"user_id": f"@x:{b.name}"})
    header = sign_request(forged, origin=a.name, destination=b.name, method="GET", uri=uri)
    status, body = b.https("GET", uri, headers={"Authorization": header})
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    # no header at all
    status, body = b.https("GET", uri)
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


def test_unreachable_server_is_502(pair: tuple[Fed, Fed]) -> None:
    a, _ = pair
    _, token, _ = register_user(a.client, a.server.shared_secret)
    resp = a.client.with_token(token).get(f"/_matrix/client/v3/profile/{q('@x:127.0.0.1:1')}")
    assert (resp.status, resp.body["errcode"]) == (502, "M_UNKNOWN")
    # and a server outside federation_domain_whitelist is refused without any request
    resp = a.client.with_token(token).get(f"/_matrix/client/v3/profile/{q('@x:elsewhere.example')}")
    assert (resp.status, resp.body["errcode"]) == (403, "M_FORBIDDEN")


def test_remote_media(pair: tuple[Fed, Fed]) -> None:
    a, b = pair
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (20, 90, 200)).save(buf, "PNG")
    png = buf.getvalue()
    _, bob_token, _ = register_user(b.client, b.server.shared_secret, "media_bob")
    resp = b.client.with_token(bob_token).post(
        "/_matrix/media/v3/upload?filename=pic.png", data=png, headers={"Content-Type": "image/png"}
    )
    assert resp.status == 200, resp.describe()
    server, _, media_id = resp.body["content_uri"][len("mxc://") :].partition("/")
    assert server == b.name

    _, alice_token, _ = register_user(a.client, a.server.shared_secret, "media_alice")
    on_a = a.client.with_token(alice_token)
    path = f"/_matrix/client/v1/media/download/{q(b.name)}/{media_id}"
    resp = on_a.get(path)
    assert resp.status == 200, resp.describe()
    assert resp.raw == png and resp.header("Content-Type") == "image/png"
    assert resp.header("Content-Disposition") == 'inline; filename="pic.png"'
    resp = on_a.get(f"{path}/renamed.png")
    assert resp.status == 200 and resp.raw == png
    assert resp.header("Content-Disposition") == 'inline; filename="renamed.png"'
    resp = on_a.get(
        f"/_matrix/client/v1/media/thumbnail/{q(b.name)}/{media_id}",
        params={"width": 32, "height": 32, "method": "crop"},
    )
    assert resp.status == 200, resp.describe()
    assert Image.open(io.BytesIO(resp.raw)).size == (32, 32)

    resp = on_a.get(f"/_matrix/client/v1/media/download/{q(b.name)}/doesnotexist")
    assert (resp.status, resp.body["errcode"]) == (404, "M_NOT_FOUND")
    # A server that is down: 502, not a hang.
    resp = on_a.get("/_matrix/client/v1/media/download/127.0.0.1:1/abcdef")
    assert (resp.status, resp.body["errcode"]) == (502, "M_UNKNOWN")
