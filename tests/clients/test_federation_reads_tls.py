"""Rooms read across two server processes over TLS (the harness of test_federation_tls.py):
a client of A lists B's public rooms (plain and filtered), walks a space on A whose child is a
space on B, and B answers an OpenID userinfo request — every request signed with X-Matrix and
checked against keys fetched over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from synapse_compat_tests.client import q, register_user
from synapse_compat_tests.launcher import free_port, launch

from .test_federation_tls import Fed, make_ca_and_leaf


@pytest.fixture(scope="module")
def rooms_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fed, Fed]]:
    certs = tmp_path_factory.mktemp("certs")
    ca, chain, key = make_ca_and_leaf(certs)
    port_a, port_b = free_port(), free_port()
    name_a, name_b = f"localhost:{port_a}", f"127.0.0.1:{port_b}"
    launched: list[Fed] = []
    try:
        for name, port in ((name_a, port_a), (name_b, port_b)):
            overrides: dict[str, Any] = {
                "server_name": name,
                "tls_certificate_path": str(chain),
                "tls_private_key_path": str(key),
                "federation_custom_ca_list": [str(ca)],
                "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
                "federation_domain_whitelist": [name_a, name_b],
                "trusted_key_servers": [],
                "allow_public_rooms_over_federation": True,
                "room_list_publication_rules": [{"action": "allow"}],
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
                listener_overrides={"resources": [{"names": ["client"]}]},
                extra_listeners=[fed_listener],
            )
            launched.append(Fed(name, port, server, ca))
        yield launched[0], launched[1]
    finally:
        for fed in launched:
            fed.server.stop()


def test_rooms_of_another_server(rooms_pair: tuple[Fed, Fed]) -> None:
    a, b = rooms_pair
    _, bob_token, _ = register_user(b.client, b.server.shared_secret, "bob")
    on_b = b.client.with_token(bob_token)
    resp = on_b.post(
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "name": "B space", "creation_content": {"type": "m.space"}},
    )
    assert resp.status == 200, resp.describe()
    b_space = resp.body["room_id"]
    resp = on_b.post(
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "name": "Chess on B", "visibility": "public"},
    )
    assert resp.status == 200, resp.describe()
    chess = resp.body["room_id"]
    resp = on_b.put(
        f"/_matrix/client/v3/rooms/{q(b_space)}/state/m.space.child/{q(chess)}", {"via": [b.name]}
    )
    assert resp.status == 200, resp.describe()

    _, alice_token, _ = register_user(a.client, a.server.shared_secret, "alice")
    on_a = a.client.with_token(alice_token)
    resp = on_a.get(f"/_matrix/client/v3/publicRooms?server={q(b.name)}")
    assert resp.status == 200, resp.describe()
    assert [e["room_id"] for e in resp.body["chunk"]] == [chess]
    resp = on_a.post(
        f"/_matrix/client/v3/publicRooms?server={q(b.name)}", {"filter": {"generic_search_term": "chess"}}
    )
    assert resp.status == 200 and [e["name"] for e in resp.body["chunk"]] == ["Chess on B"]

    resp = on_a.post(
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "name": "A space", "creation_content": {"type": "m.space"}},
    )
    a_space = resp.body["room_id"]
    resp = on_a.put(
        f"/_matrix/client/v3/rooms/{q(a_space)}/state/m.space.child/{q(b_space)}", {"via": [b.name]}
    )
    assert resp.status == 200, resp.describe()
    resp = on_a.get(f"/_matrix/client/v1/rooms/{q(a_space)}/hierarchy")
    assert resp.status == 200, resp.describe()
    assert [(r["room_id"], r.get("name")) for r in resp.body["rooms"]] == [
        (a_space, "A space"),
        (b_space, "B space"),
        (chess, "Chess on B"),
    ]


def test_openid_userinfo_over_tls(rooms_pair: tuple[Fed, Fed]) -> None:
    _, b = rooms_pair
    carol, token, _ = register_user(b.client, b.server.shared_secret, "carol")
    resp = b.client.with_token(token).post(f"/_matrix/client/v3/user/{q(carol)}/openid/request_token", {})
    assert resp.status == 200, resp.describe()
    assert resp.body["matrix_server_name"] == b.name
    status, body = b.https(
        "GET", f"/_matrix/federation/v1/openid/userinfo?access_token={q(resp.body['access_token'])}"
    )
    assert (status, body) == (200, {"sub": carol})
