"""Our server and Synapse federating over TLS on loopback (interop with the reference server).

Synapse comes from PyPI into its own virtualenv (`bench/synapse_ref.py install`, cached in
`bench/.synapse-venv`). Both servers get a federation listener with a certificate from a throwaway
CA made here, trust only that CA and allow loopback, configured with each server's own keys:
Synapse `localhost:PORT` (`tls_certificate_path`, `federation_custom_ca_list`,
`ip_range_whitelist`), ours `localhost:PORT` too: Synapse refuses server names that are IP
literals in a blocked range whatever its allow list says, so loopback peers must be named by a
hostname. Server names carry explicit ports, so no DNS or `.well-known` is involved.

Checked here: key exchange and request signing in both directions, through the client APIs that
use them (profiles and room aliases of the other server's users).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import synapse_ref
from synapse_compat_tests.client import MatrixClient, q, register_user
from synapse_compat_tests.launcher import LaunchedServer, free_port, launch
from tests.clients.test_federation_tls import make_ca_and_leaf

LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass
class Peer:
    name: str
    base_url: str
    shared_secret: str

    @property
    def client(self) -> MatrixClient:
        return MatrixClient(self.base_url)


def _install_synapse() -> None:
    try:
        synapse_ref.install()
    except Exception as exc:  # no network to PyPI, build failure...
        message = f"Synapse could not be installed from PyPI: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Peer]]:
    """(ours, synapse), federating."""
    _install_synapse()
    certs = tmp_path_factory.mktemp("certs")
    ca, chain, key = make_ca_and_leaf(certs)
    our_fed_port, syn_fed_port, syn_client_port = free_port(), free_port(), free_port()
    our_name, syn_name = f"localhost:{our_fed_port}", f"localhost:{syn_fed_port}"
    names = [our_name, syn_name]
    ours: LaunchedServer | None = None
    syn_dir = tmp_path_factory.mktemp("synapse")
    try:
        ours = launch(
            "sqlite",
            tmp_path_factory.mktemp("ours"),
            overrides={
                "server_name": our_name,
                "tls_certificate_path": str(chain),
                "tls_private_key_path": str(key),
                "federation_custom_ca_list": [str(ca)],
                "ip_range_whitelist": LOOPBACK,
                "federation_domain_whitelist": names,
                "trusted_key_servers": [],
                "allow_public_rooms_over_federation": True,
            },
            listener_overrides={"resources": [{"names": ["client"]}]},
            extra_listeners=[
                {
                    "port": our_fed_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": True,
                    "resources": [{"names": ["federation"]}],
                }
            ],
        )
        synapse = synapse_ref.start(
            db="sqlite",
            port=syn_client_port,
            data_dir=syn_dir,
            bcrypt_rounds=4,
            extra_config={
                "server_name": syn_name,
                "listeners": [
                    {
                        "port": syn_client_port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": False,
                        "resources": [{"names": ["client", "media"], "compress": False}],
                    },
                    {
                        "port": syn_fed_port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": True,
                        "resources": [{"names": ["federation"], "compress": False}],
                    },
                ],
                "tls_certificate_path": str(chain),
                "tls_private_key_path": str(key),
                "federation_custom_ca_list": [str(ca)],
                "federation_verify_certificates": True,
                "ip_range_whitelist": LOOPBACK,
                "federation_domain_whitelist": names,
                "trusted_key_servers": [],
                "allow_public_rooms_over_federation": True,
            },
        )
        yield (
            Peer(our_name, ours.base_url, ours.shared_secret),
            Peer(syn_name, synapse.base_url, synapse.shared_secret),
        )
    finally:
        synapse_ref.stop(syn_dir)
        if ours is not None:
            ours.stop()
        _dump_synapse_log(syn_dir)


def _dump_synapse_log(syn_dir: Path) -> None:
    """Synapse's log tail on failure reads better in the test output than in a temp dir."""
    log = syn_dir / synapse_ref.LOG_FILE
    if log.exists() and os.environ.get("SHOW_SYNAPSE_LOG"):
        print(log.read_text(errors="replace")[-20000:])


def test_profiles_both_ways(peers: tuple[Peer, Peer]) -> None:
    ours, synapse = peers
    syn_user, syn_token, _ = register_user(
        synapse.client, synapse.shared_secret, "sam", displayname="Sam on Synapse"
    )
    our_user, our_token, _ = register_user(
        ours.client, ours.shared_secret, "olga", displayname="Olga on ours"
    )

    resp = ours.client.with_token(our_token).get(f"/_matrix/client/v3/profile/{q(syn_user)}")
    assert resp.status == 200, resp.describe()
    assert resp.body.get("displayname") == "Sam on Synapse"

    resp = synapse.client.with_token(syn_token).get(f"/_matrix/client/v3/profile/{q(our_user)}")
    assert resp.status == 200, resp.describe()
    assert resp.body.get("displayname") == "Olga on ours"


def test_room_aliases_both_ways(peers: tuple[Peer, Peer]) -> None:
    ours, synapse = peers
    _, syn_token, _ = register_user(synapse.client, synapse.shared_secret)
    _, our_token, _ = register_user(ours.client, ours.shared_secret)
    on_syn = synapse.client.with_token(syn_token)
    on_ours = ours.client.with_token(our_token)

    resp = on_syn.post("/_matrix/client/v3/createRoom", {"room_alias_name": "synlobby"})
    assert resp.status == 200, resp.describe()
    syn_room = resp.body["room_id"]
    resp = on_ours.post("/_matrix/client/v3/createRoom", {"room_alias_name": "ourlobby"})
    assert resp.status == 200, resp.describe()
    our_room = resp.body["room_id"]

    resp = on_ours.get(f"/_matrix/client/v3/directory/room/{q('#synlobby:' + synapse.name)}")
    assert resp.status == 200, resp.describe()
    assert resp.body["room_id"] == syn_room and synapse.name in resp.body["servers"]

    resp = on_syn.get(f"/_matrix/client/v3/directory/room/{q('#ourlobby:' + ours.name)}")
    assert resp.status == 200, resp.describe()
    assert resp.body["room_id"] == our_room and ours.name in resp.body["servers"]

    resp = on_syn.get(f"/_matrix/client/v3/directory/room/{q('#missing:' + ours.name)}")
    assert resp.status == 404, resp.describe()
