"""Two homeserver processes sharing rooms over federation (TLS from a throwaway CA, loopback
allowed, explicit ports): the acceptance scenarios of issue #12.

A DM and a group with members on both servers; edits, reactions, replies and redactions; typing,
receipts and presence seen across; leave and re-join; one server stopped while the other keeps
sending, then restarted and caught up with nothing lost; both servers changing the topic at once
and ending with the same state; an encrypted DM between servers with matrix-js-sdk's Rust crypto.
Every wait is a bounded long-poll or poll, never a fixed sleep.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import pytest

from synapse_compat_tests.client import MatrixClient, q, register_user
from synapse_compat_tests.launcher import LaunchedServer, free_port, launch, restart
from tests.clients.federation_harness import make_ca_and_leaf

V3 = "/_matrix/client/v3"
LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass
class Site:
    name: str
    server: LaunchedServer

    @property
    def client(self) -> MatrixClient:
        return MatrixClient(self.server.base_url)

    def user(self, localpart: str, password: str | None = None) -> User:
        kwargs = {"password": password} if password else {}
        user_id, token, _ = register_user(self.client, self.server.shared_secret, localpart, **kwargs)
        return User(user_id, self.client.with_token(token))


@dataclass
class User:
    user_id: str
    api: MatrixClient
    since: str | None = None
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # room -> timeline events
    ephemeral: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    presence: list[dict[str, Any]] = field(default_factory=list)
    invites: set[str] = field(default_factory=set)

    def sync_once(self, timeout_ms: int = 2000) -> dict[str, Any]:
        params = {"timeout": str(timeout_ms)} | ({"since": self.since} if self.since else {})
        resp = self.api.get(f"{V3}/sync", params=params)
        assert resp.status == 200, resp.describe()
        body = dict(resp.body)
        self.since = body["next_batch"]
        rooms = body.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            self.seen.setdefault(room_id, []).extend(room["timeline"]["events"])
            self.ephemeral.setdefault(room_id, []).extend(room.get("ephemeral", {}).get("events", []))
        self.invites.update(rooms.get("invite", {}))
        self.presence.extend(body.get("presence", {}).get("events", []))
        return body

    def wait(self, what: str, done: Callable[[], bool], attempts: int = 40) -> None:
        """Long-poll /sync until `done()`; bounded."""
        for _ in range(attempts):
            if done():
                return
            self.sync_once()
        raise AssertionError(f"{self.user_id}: never saw {what}")

    def events(self, room_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.seen.get(room_id, []) if event_type is None or e["type"] == event_type]

    def bodies(self, room_id: str) -> list[str]:
        return [e["content"].get("body", "") for e in self.events(room_id, "m.room.message")]

    def send(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        txn = f"t{time.monotonic_ns()}"
        if event_type == "m.room.redaction":
            target = content["redacts"]
            body = {k: v for k, v in content.items() if k != "redacts"}
            resp = self.api.put(f"{V3}/rooms/{q(room_id)}/redact/{q(target)}/{txn}", body)
        else:
            resp = self.api.put(f"{V3}/rooms/{q(room_id)}/send/{event_type}/{txn}", content)
        assert resp.status == 200, resp.describe()
        return str(resp.body["event_id"])

    def text(self, room_id: str, body: str) -> str:
        return self.send(room_id, {"msgtype": "m.text", "body": body})


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Site]]:
    certs = tmp_path_factory.mktemp("certs")
    ca, chain, key = make_ca_and_leaf(certs)
    ports = free_port(), free_port()
    names = [f"localhost:{ports[0]}", f"127.0.0.1:{ports[1]}"]
    launched: list[Site] = []
    try:
        for name, port in zip(names, ports, strict=True):
            server = launch(
                "sqlite",
                tmp_path_factory.mktemp(name.replace(":", "_")),
                overrides={
                    "server_name": name,
                    "tls_certificate_path": str(chain),
                    "tls_private_key_path": str(key),
                    "federation_custom_ca_list": [str(ca)],
                    "ip_range_whitelist": LOOPBACK,
                    "federation_domain_whitelist": names,
                    "trusted_key_servers": [],
                    # Retry a server that was down quickly: the restart scenario waits for it.
                    "federation": {
                        "destination_min_retry_interval": "1s",
                        "destination_max_retry_interval": "2s",
                    },
                },
                listener_overrides={"resources": [{"names": ["client", "media"]}]},
                extra_listeners=[
                    {
                        "port": port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": True,
                        "resources": [{"names": ["federation"]}],
                    }
                ],
            )
            launched.append(Site(name, server))
        yield launched[0], launched[1]
    finally:
        for site in launched:
            site.server.stop()


def shared_room(owner: User, guests: list[User], *, server_name: str, **create: Any) -> str:
    """A room made by `owner`; each guest is invited and joins through `server_name`."""
    resp = owner.api.post(f"{V3}/createRoom", {"preset": "private_chat", **create})
    assert resp.status == 200, resp.describe()
    room_id = str(resp.body["room_id"])
    for guest in guests:
        resp = owner.api.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": guest.user_id})
        assert resp.status == 200, resp.describe()
        guest.wait("the invite", lambda g=guest: room_id in g.invites)  # type: ignore[misc]
        resp = guest.api.post(f"{V3}/join/{q(room_id)}", {}, params={"server_name": server_name})
        assert resp.status == 200, resp.describe()
    owner.wait(
        "everyone joined",
        lambda: (
            {g.user_id for g in guests}
            <= {
                e["state_key"]
                for e in owner.events(room_id, "m.room.member")
                if e["content"]["membership"] == "join"
            }
        ),
    )
    return room_id


def messages_page(user: User, room_id: str) -> list[str]:
    resp = user.api.get(f"{V3}/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "100"})
    assert resp.status == 200, resp.describe()
    return [e["event_id"] for e in reversed(resp.body["chunk"]) if e["type"] != "m.room.member"]


def full_page(user: User, room_id: str) -> list[tuple[str, str]]:
    """(event id, type) of the room's last 100 events, state included, oldest first."""
    resp = user.api.get(f"{V3}/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "100"})
    assert resp.status == 200, resp.describe()
    return [(e["event_id"], e["type"]) for e in reversed(resp.body["chunk"])]


def test_dm_and_group_with_edits_reactions_replies_redactions(sites: tuple[Site, Site]) -> None:
    a, b = sites
    alice, dave = a.user("alice_s"), a.user("dave_s")
    bob, carol = b.user("bob_s"), b.user("carol_s")
    for u in (alice, dave, bob, carol):
        u.sync_once(0)

    dm = shared_room(alice, [bob], server_name=a.name, is_direct=True)
    alice.text(dm, "hello Bob, from A")
    bob.wait("alice's DM", lambda: "hello Bob, from A" in bob.bodies(dm))
    bob.text(dm, "hi Alice, from B")
    alice.wait("bob's answer", lambda: "hi Alice, from B" in alice.bodies(dm))

    group = shared_room(bob, [alice, dave, carol], server_name=b.name, name="Group on B")
    members = (alice, bob, carol, dave)

    def say(sender: User, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        """Send, then wait until every member has it: a conversation, one turn after another."""
        event_id = sender.send(group, content, event_type)
        for member in members:
            member.wait(
                f"{event_type} {event_id}",
                lambda m=member: (
                    event_id
                    in {  # type: ignore[misc]
                        e["event_id"] for e in m.events(group)
                    }
                ),
            )
        return event_id

    question = say(carol, {"msgtype": "m.text", "body": "who brings the cake?"})
    say(carol, {
        "msgtype": "m.text",
        "body": "* who brings the cake and the candles?",
        "m.new_content": {"msgtype": "m.text", "body": "who brings the cake and the candles?"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": question},
    })  # fmt: skip
    say(dave, {"m.relates_to": {"rel_type": "m.annotation", "event_id": question, "key": "👍"}}, "m.reaction")
    say(
        alice,
        {"msgtype": "m.text", "body": "I do", "m.relates_to": {"m.in_reply_to": {"event_id": question}}},
    )
    mistake = say(alice, {"msgtype": "m.text", "body": "oops, wrong room"})
    say(alice, {"redacts": mistake, "reason": "typo"}, "m.room.redaction")
    # The redacted message is redacted on the other server too.
    resp = carol.api.get(f"{V3}/rooms/{q(group)}/event/{q(mistake)}")
    assert resp.status == 200, resp.describe()
    assert resp.body["content"] == {}
    # The edit is applied on the other server (relations aggregated on the original).
    resp = dave.api.get(f"{V3}/rooms/{q(group)}/event/{q(question)}")
    assert resp.status == 200 and "m.replace" in resp.body.get("unsigned", {}).get("m.relations", {})
    # Both servers' /messages show the same events in the same order.
    assert messages_page(alice, group) == messages_page(carol, group)


def test_typing_receipts_and_presence_across(sites: tuple[Site, Site]) -> None:
    a, b = sites
    alice, bob = a.user("alice_t"), b.user("bob_t")
    for u in (alice, bob):
        u.sync_once(0)
    room = shared_room(alice, [bob], server_name=a.name)

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

    event_id = alice.text(room, "read me")
    bob.wait("the message", lambda: event_id in {e["event_id"] for e in bob.events(room)})
    resp = bob.api.post(f"{V3}/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})
    assert resp.status == 200, resp.describe()
    alice.wait(
        "bob's read receipt",
        lambda: any(
            e["type"] == "m.receipt" and bob.user_id in e["content"].get(event_id, {}).get("m.read", {})
            for e in alice.ephemeral.get(room, [])
        ),
    )

    resp = bob.api.put(
        f"{V3}/presence/{q(bob.user_id)}/status", {"presence": "online", "status_msg": "in class"}
    )
    assert resp.status == 200, resp.describe()
    alice.wait(
        "bob's presence",
        lambda: any(
            e["sender"] == bob.user_id and e["content"].get("status_msg") == "in class"
            for e in alice.presence
        ),
    )


def test_leave_and_rejoin(sites: tuple[Site, Site]) -> None:
    a, b = sites
    alice, bob = a.user("alice_l"), b.user("bob_l")
    for u in (alice, bob):
        u.sync_once(0)
    room = shared_room(alice, [bob], server_name=a.name, preset="public_chat")
    resp = bob.api.post(f"{V3}/rooms/{q(room)}/leave", {})
    assert resp.status == 200, resp.describe()
    alice.wait(
        "bob's leave",
        lambda: any(
            e["state_key"] == bob.user_id and e["content"]["membership"] == "leave"
            for e in alice.events(room, "m.room.member")
        ),
    )
    alice.text(room, "said while bob was away")
    resp = bob.api.post(f"{V3}/join/{q(room)}", {}, params={"server_name": a.name})
    assert resp.status == 200, resp.describe()
    alice.text(room, "welcome back")
    bob.wait("messages after re-joining", lambda: "welcome back" in bob.bodies(room))
    bob.text(room, "glad to be back")
    alice.wait("bob's message after re-joining", lambda: "glad to be back" in alice.bodies(room))


def test_rejoin_through_invite_keeps_timeline_order(sites: tuple[Site, Site]) -> None:
    """The invite that brings a user back arrives out of band (an outlier); once re-joined it is
    in the timeline between the leave and the join on both servers, not before the room's
    creation."""
    a, b = sites
    alice, bob = a.user("alice_r"), b.user("bob_r")
    for u in (alice, bob):
        u.sync_once(0)
    room = shared_room(alice, [bob], server_name=a.name)
    said = alice.text(room, "before the leave")
    bob.wait("alice's message", lambda: said in {e["event_id"] for e in bob.events(room)})
    resp = bob.api.post(f"{V3}/rooms/{q(room)}/leave", {})
    assert resp.status == 200, resp.describe()
    alice.wait(
        "bob's leave",
        lambda: any(
            e["state_key"] == bob.user_id and e["content"]["membership"] == "leave"
            for e in alice.events(room, "m.room.member")
        ),
    )
    resp = alice.api.post(f"{V3}/rooms/{q(room)}/invite", {"user_id": bob.user_id})
    assert resp.status == 200, resp.describe()
    bob.invites.discard(room)
    bob.wait("the new invite", lambda: room in bob.invites)
    resp = bob.api.post(f"{V3}/join/{q(room)}", {}, params={"server_name": a.name})
    assert resp.status == 200, resp.describe()
    event_id = bob.text(room, "back")
    alice.wait("bob's message", lambda: event_id in {e["event_id"] for e in alice.events(room)})
    on_a, on_b = full_page(alice, room), full_page(bob, room)
    assert on_a == on_b, "\n".join(f"{x}  |  {y}" for x, y in zip_longest(on_a, on_b))
    assert on_b[0][1] == "m.room.create"
    assert [t for _, t in on_b[-4:]] == ["m.room.member"] * 3 + ["m.room.message"]


def test_server_down_then_caught_up(sites: tuple[Site, Site]) -> None:
    a, b = sites
    alice, bob = a.user("alice_d"), b.user("bob_d")
    for u in (alice, bob):
        u.sync_once(0)
    room = shared_room(alice, [bob], server_name=a.name)
    alice.text(room, "before the outage")
    bob.wait("the first message", lambda: "before the outage" in bob.bodies(room))

    b.server.process.terminate()
    b.server.process.wait(30)
    sent = [f"during the outage {i}" for i in range(5)]
    for body in sent:
        alice.text(room, body)  # never blocked by the dead destination
    restart(b.server)
    bob.wait(
        "every message sent while B was down", lambda: all(m in bob.bodies(room) for m in sent), attempts=60
    )
    bodies = bob.bodies(room)
    assert all(bodies.count(m) == 1 for m in sent), bodies  # nothing doubled
    bob.text(room, "back online")
    alice.wait("B's message after its restart", lambda: "back online" in alice.bodies(room))


def test_concurrent_topic_changes_converge(sites: tuple[Site, Site]) -> None:
    a, b = sites
    alice, bob = a.user("alice_c"), b.user("bob_c")
    for u in (alice, bob):
        u.sync_once(0)
    room = shared_room(alice, [bob], server_name=a.name, power_level_content_override={"state_default": 0})

    def set_topic(user: User, topic: str) -> int:
        return user.api.put(f"{V3}/rooms/{q(room)}/state/m.room.topic", {"topic": topic}).status

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        statuses = list(pool.map(set_topic, (alice, bob), ("topic from A", "topic from B")))
    assert statuses == [200, 200]

    def topic_on(user: User) -> str | None:
        resp = user.api.get(f"{V3}/rooms/{q(room)}/state/m.room.topic")
        return resp.body.get("topic") if resp.status == 200 else None

    # Each server sees both changes, then both resolve the fork to the same topic.
    for user, other_topic in ((alice, "topic from B"), (bob, "topic from A")):
        user.wait(
            "the other server's topic",
            lambda u=user, t=other_topic: any(  # type: ignore[misc]
                e["content"].get("topic") == t for e in u.events(room, "m.room.topic")
            ),
        )
    deadline = time.monotonic() + 30
    while topic_on(alice) != topic_on(bob) and time.monotonic() < deadline:
        alice.sync_once(500)
    assert topic_on(alice) == topic_on(bob) in ("topic from A", "topic from B")
    # A later message on each side extends one merged DAG: both still agree afterwards.
    alice.text(room, "after the race")
    bob.wait("the message after the race", lambda: "after the race" in bob.bodies(room))
    assert topic_on(alice) == topic_on(bob)


@pytest.mark.node
def test_encrypted_dm_across_servers_with_rust_crypto(sites: tuple[Site, Site]) -> None:
    from tests.clients.test_js_e2ee import JS_DIR, NODE, PASSWORD, _require_node_modules

    _require_node_modules()
    a, b = sites
    alice, bob = a.user("alice_e2ee", PASSWORD), b.user("bob_e2ee", PASSWORD)
    env = {
        **os.environ,
        "HS_BASE_URL": a.server.base_url,
        "BOB_BASE_URL": b.server.base_url,
        "ALICE_USER": alice.user_id.split(":")[0][1:],
        "BOB_USER": bob.user_id.split(":")[0][1:],
        "USER_PASSWORD": PASSWORD,
    }
    proc = subprocess.run(
        [str(NODE), "e2ee_dm.mjs"],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = f"--- stdout ---\n{proc.stdout[-20000:]}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, output
    assert "OK" in proc.stdout, output
