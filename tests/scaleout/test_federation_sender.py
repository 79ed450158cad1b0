"""`federation_sender_instances: [fedsender1]`: main hands outbound federation to a worker.

Our main (PostgreSQL, Redis) with a federation_sender worker, and a second homeserver of ours
(SQLite) federating with it over TLS (as tests/clients/test_federation_scenarios.py). A message,
typing and a to-device message from a local user reach the remote user: the PDU through the
events stream the worker follows, typing through the typing stream, the to-device message
through the outbox main writes in the send's own transaction. Main's own metrics show that it
sent no transaction, the worker's that it did; with the worker stopped, what is sent meanwhile
waits in the database and reaches the remote server once it is started again.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synapse_compat_tests.client import q
from synapse_compat_tests.launcher import LaunchedServer, free_port, launch
from tests.clients.federation_harness import make_ca_and_leaf
from tests.clients.test_federation_scenarios import LOOPBACK, V3, Site, User, shared_room
from tests.scaleout.topology import Topology, Worker, start_topology

SENDER = "fedsender1"
SENT = re.compile(r"^synapse_federation_client_sent_transactions_total(?:\{[^}]*\})? (\S+)$", re.M)


@dataclass
class Federation:
    topology: Topology
    ours: Site
    remote: Site

    @property
    def sender(self) -> Worker:
        return next(w for w in self.topology.workers if w.name == SENDER)


def _federating(name: str, names: list[str], certs: tuple[Path, Path, Path]) -> dict[str, Any]:
    ca, chain, key = certs
    return {
        "server_name": name,
        "tls_certificate_path": str(chain),
        "tls_private_key_path": str(key),
        "federation_custom_ca_list": [str(ca)],
        "ip_range_whitelist": LOOPBACK,
        "federation_domain_whitelist": names,
        "trusted_key_servers": [],
        "enable_metrics": True,
        "federation": {"destination_min_retry_interval": "1s", "destination_max_retry_interval": "2s"},
    }


def _tls_listener(port: int) -> dict[str, Any]:
    return {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": True,
        "resources": [{"names": ["federation"]}],
    }


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    certs = make_ca_and_leaf(tmp_path_factory.mktemp("certs"))
    ports = free_port(), free_port()
    names = [f"localhost:{ports[0]}", f"127.0.0.1:{ports[1]}"]
    plain = {"resources": [{"names": ["client", "media", "metrics"]}]}  # federation only over TLS
    topology = start_topology(
        tmp_path_factory.mktemp("fedsender"),
        readers=0,
        pusher=False,
        overrides={**_federating(names[0], names, certs), "federation_sender_instances": [SENDER]},
        main_listener=plain,
        extra_listeners=[_tls_listener(ports[0])],
    )
    remote: LaunchedServer | None = None
    try:
        topology.start_worker("federation_sender", SENDER)
        remote = launch(
            "sqlite",
            tmp_path_factory.mktemp("remote"),
            overrides=_federating(names[1], names, certs),
            listener_overrides=plain,
            extra_listeners=[_tls_listener(ports[1])],
        )
        yield Federation(topology, Site(names[0], topology.main), Site(names[1], remote))
    finally:
        if remote is not None:
            remote.stop()
        topology.stop()


def _sent_transactions(base_url: str) -> float:
    with urllib.request.urlopen(base_url + "/_synapse/metrics", timeout=10) as resp:
        text = resp.read().decode()
    match = SENT.search(text)
    assert match is not None, "no transaction counter in the metrics"  # (0 is shown as 0.0)
    return float(match.group(1))


def _to_device(user: User, want: str, room: str | None = None, text: str = "", attempts: int = 40) -> None:
    """Long-poll /sync until a to-device message with `want` as its body arrived (and, with
    `room`, the message `text` there: one sync may bring both)."""
    got: set[str] = set()
    for _ in range(attempts):
        body = user.sync_once()
        got |= {e["content"].get("body") for e in body.get("to_device", {}).get("events", [])}
        if want in got and (room is None or text in user.bodies(room)):
            return
    raise AssertionError(f"{user.user_id}: never got {want!r} (to-device) and {text!r}: {got}")


def _send_to_device(sender: User, target: User, body: str) -> None:
    resp = sender.api.put(
        f"{V3}/sendToDevice/org.example.ping/{body}", {"messages": {target.user_id: {"*": {"body": body}}}}
    )
    assert resp.status == 200, resp.describe()


def test_the_worker_sends_and_main_does_not(federation: Federation) -> None:
    alice = federation.ours.user("alice")
    bob = federation.remote.user("bob")
    room = shared_room(alice, [bob], server_name=federation.ours.name)

    alice.text(room, "hello from a worker")
    bob.wait("alice's message", lambda: "hello from a worker" in bob.bodies(room))

    resp = alice.api.put(
        f"{V3}/rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 20000}
    )
    assert resp.status == 200, resp.describe()
    bob.wait(
        "alice typing",
        lambda: any(
            e["type"] == "m.typing" and alice.user_id in e["content"]["user_ids"]
            for e in bob.ephemeral.get(room, [])
        ),
    )

    _send_to_device(alice, bob, "ping1")  # main -> outbox -> the worker's queue -> bob's server
    _to_device(bob, "ping1")

    assert _sent_transactions(federation.topology.main.base_url) == 0
    assert _sent_transactions(federation.sender.url) >= 3


def test_sent_while_the_worker_is_down_arrives_after_its_restart(federation: Federation) -> None:
    alice = federation.ours.user("carol")
    bob = federation.remote.user("dave")
    room = shared_room(alice, [bob], server_name=federation.ours.name)
    bob.sync_once(timeout_ms=0)
    topology = federation.topology
    sender = federation.sender
    sender.stop()
    topology.workers.remove(sender)
    stderr = sender.stderr.read_text()  # (the restarted worker writes the same file)
    assert "Traceback" not in stderr, stderr[-4000:]

    alice.text(room, "queued in the database")  # committed on main; nobody sends it yet
    _send_to_device(alice, bob, "ping2")  # waits in the outbox
    topology.start_worker("federation_sender", SENDER)  # reads on from its saved positions

    _to_device(bob, "ping2", room, "queued in the database")
    assert _sent_transactions(topology.main.base_url) == 0
    stderr = "\n".join(w.stderr.read_text() for w in topology.workers)
    assert "Traceback" not in stderr, stderr[-4000:]
