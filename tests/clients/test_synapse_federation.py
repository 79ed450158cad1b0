"""Our server and Synapse federating over TLS on loopback (interop with the reference server).

Synapse comes from PyPI into its own virtualenv (`bench/synapse_ref.py install`, cached in
`bench/.synapse-venv`). Both servers get a federation listener with a certificate from a throwaway
CA made here, trust only that CA and allow loopback, configured with each server's own keys:
Synapse `localhost:PORT` (`tls_certificate_path`, `federation_custom_ca_list`,
`ip_range_whitelist`), ours `localhost:PORT` too: Synapse refuses server names that are IP
literals in a blocked range whatever its allow list says, so loopback peers must be named by a
hostname. Server names carry explicit ports, so no DNS or `.well-known` is involved.

Checked here: key exchange and request signing in both directions, through the client APIs that
use them (profiles and room aliases of the other server's users); a room made on either side
(Synapse's default v12, ours, ours as v12) joined by a user of the other server, a conversation
taking turns (messages, an edit, reactions, a reply, a redaction), typing and receipts both ways,
leave and re-join through a new invite, and both servers' /messages identical after each step.
`federating_pair` is also what bench/federation_synapse.py runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import pytest

from bench import synapse_ref
from synapse_compat_tests.client import V3, MatrixClient, q, random_localpart, register_user
from synapse_compat_tests.launcher import LaunchedServer, free_port, launch
from tests.clients.test_federation_scenarios import User, full_page, messages_page, shared_room
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
    with federating_pair(tmp_path_factory.mktemp) as pair:
        yield pair


@contextmanager
def federating_pair(mkdir: Callable[[str], Path]) -> Iterator[tuple[Peer, Peer]]:
    """(ours, synapse), federating; Synapse must be installed. Also used by bench/."""
    certs = mkdir("certs")
    ca, chain, key = make_ca_and_leaf(certs)
    our_fed_port, syn_fed_port, syn_client_port = free_port(), free_port(), free_port()
    our_name, syn_name = f"localhost:{our_fed_port}", f"localhost:{syn_fed_port}"
    names = [our_name, syn_name]
    ours: LaunchedServer | None = None
    syn_dir = mkdir("synapse")
    try:
        ours = launch(
            "sqlite",
            mkdir("ours"),
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


def _user(peer: Peer, localpart: str) -> User:
    user_id, token, _ = register_user(peer.client, peer.shared_secret, random_localpart(localpart))
    user = User(user_id, peer.client.with_token(token))
    user.sync_once(0)
    return user


def _conversation(room_id: str, first: User, second: User) -> None:
    """Messages, an edit and reactions, taking turns: each event is seen by both before the next."""

    def say(sender: User, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        event_id = sender.send(room_id, content, event_type)
        for member in (first, second):
            member.wait(
                f"{event_type} {event_id}",
                lambda m=member: event_id in {e["event_id"] for e in m.events(room_id)},  # type: ignore[misc]
            )
        return event_id

    hello = say(first, {"msgtype": "m.text", "body": "hello from " + first.user_id})
    answer = say(second, {"msgtype": "m.text", "body": "hi back from " + second.user_id})
    say(first, {
        "msgtype": "m.text",
        "body": "* hello again from " + first.user_id,
        "m.new_content": {"msgtype": "m.text", "body": "hello again from " + first.user_id},
        "m.relates_to": {"rel_type": "m.replace", "event_id": hello},
    })  # fmt: skip
    say(second, {"m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "👍"}}, "m.reaction")
    say(first, {"m.relates_to": {"rel_type": "m.annotation", "event_id": answer, "key": "🎉"}}, "m.reaction")
    say(second, {"msgtype": "m.text", "body": "bye", "m.relates_to": {"m.in_reply_to": {"event_id": hello}}})
    mistake = say(first, {"msgtype": "m.text", "body": "oops, wrong room"})
    say(first, {"redacts": mistake, "reason": "typo"}, "m.room.redaction")
    resp = second.api.get(f"{V3}/rooms/{q(room_id)}/event/{q(mistake)}")
    assert resp.status == 200 and resp.body["content"] == {}, resp.describe()
    # The edit is aggregated on the original on both servers.
    for member in (first, second):
        resp = member.api.get(f"{V3}/rooms/{q(room_id)}/event/{q(hello)}")
        assert resp.status == 200, resp.describe()
        assert "m.replace" in resp.body.get("unsigned", {}).get("m.relations", {}), resp.body
    # Both servers' /messages show the same events in the same order, state events included
    # (the joins, and the guest's view starts at the room's creation).
    assert full_page(first, room_id) == full_page(second, room_id)
    assert len(messages_page(first, room_id)) >= 6


def _typing_and_receipt(room_id: str, typist: User, reader: User) -> None:
    resp = typist.api.put(
        f"{V3}/rooms/{q(room_id)}/typing/{q(typist.user_id)}", {"typing": True, "timeout": 20000}
    )
    assert resp.status == 200, resp.describe()
    reader.wait(
        "the other side typing",
        lambda: any(
            e["type"] == "m.typing" and typist.user_id in e["content"]["user_ids"]
            for e in reader.ephemeral.get(room_id, [])
        ),
    )
    event_id = typist.text(room_id, "read me")
    reader.wait("the message", lambda: event_id in {e["event_id"] for e in reader.events(room_id)})
    resp = reader.api.post(f"{V3}/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
    assert resp.status == 200, resp.describe()
    typist.wait(
        "the read receipt",
        lambda: any(
            e["type"] == "m.receipt" and reader.user_id in e["content"].get(event_id, {}).get("m.read", {})
            for e in typist.ephemeral.get(room_id, [])
        ),
    )


@pytest.mark.parametrize(
    ("creator_side", "room_version"), [("synapse", None), ("ours", None), ("ours", "12")]
)
def test_shared_room_conversation(
    peers: tuple[Peer, Peer], creator_side: str, room_version: str | None
) -> None:
    ours, synapse = peers
    owner_peer, guest_peer = (synapse, ours) if creator_side == "synapse" else (ours, synapse)
    owner, guest = _user(owner_peer, "owner"), _user(guest_peer, "guest")
    create = {"room_version": room_version} if room_version else {}
    room_id = shared_room(
        owner, [guest], server_name=owner_peer.name, name=f"made on {creator_side}", **create
    )
    if creator_side == "synapse" or room_version == "12":
        assert ":" not in room_id, "Synapse's default room version (12) has no server part"
    _conversation(room_id, owner, guest)
    _typing_and_receipt(room_id, owner, guest)
    _typing_and_receipt(room_id, guest, owner)
    _leave_and_rejoin(room_id, owner, guest, owner_peer.name)


def _leave_and_rejoin(room_id: str, owner: User, guest: User, via: str) -> None:
    def membership_seen(user: User, member: str, membership: str) -> bool:
        return any(
            e["state_key"] == member and e["content"]["membership"] == membership
            for e in user.events(room_id, "m.room.member")
        )

    resp = guest.api.post(f"{V3}/rooms/{q(room_id)}/leave", {})
    assert resp.status == 200, resp.describe()
    owner.wait("the guest leaving", lambda: membership_seen(owner, guest.user_id, "leave"))
    resp = owner.api.post(f"{V3}/rooms/{q(room_id)}/invite", {"user_id": guest.user_id})
    assert resp.status == 200, resp.describe()
    guest.invites.discard(room_id)
    guest.wait("the new invite", lambda: room_id in guest.invites)
    resp = guest.api.post(f"{V3}/join/{q(room_id)}", {}, params={"server_name": via})
    assert resp.status == 200, resp.describe()
    owner.seen.pop(room_id, None)
    owner.wait("the guest back", lambda: membership_seen(owner, guest.user_id, "join"))
    event_id = guest.text(room_id, "back again")
    owner.wait(
        "a message after the re-join", lambda: event_id in {e["event_id"] for e in owner.events(room_id)}
    )
    mine, theirs = full_page(owner, room_id), full_page(guest, room_id)
    assert mine == theirs, "\n".join(f"{a}  |  {b}" for a, b in zip_longest(mine, theirs))


@pytest.mark.parametrize("creator_side", ["synapse", "ours"])
def test_concurrent_topic_changes_converge(peers: tuple[Peer, Peer], creator_side: str) -> None:
    """Both users change the topic at once (a fork): state resolution on each server picks the
    same winner."""
    ours, synapse = peers
    owner_peer, guest_peer = (synapse, ours) if creator_side == "synapse" else (ours, synapse)
    owner, guest = _user(owner_peer, "owner"), _user(guest_peer, "guest")
    room_id = shared_room(
        owner,
        [guest],
        server_name=owner_peer.name,
        power_level_content_override={"events": {"m.room.topic": 0}},
    )
    path = f"{V3}/rooms/{q(room_id)}/state/m.room.topic"
    ids = []
    for user, topic in ((owner, "topic of the owner"), (guest, "topic of the guest")):
        resp = user.api.put(path, {"topic": topic})
        assert resp.status == 200, resp.describe()
        ids.append(resp.body["event_id"])
    for user in (owner, guest):
        user.wait("both topic changes", lambda u=user: set(ids) <= {e["event_id"] for e in u.events(room_id)})  # type: ignore[misc]
    deadline = time.monotonic() + 20
    while True:
        topics = [u.api.get(path).body.get("topic") for u in (owner, guest)]
        if topics[0] == topics[1] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert topics[0] == topics[1], topics
    # Concurrent events may be listed in either order (arrival vs depth), but the same ones.
    assert sorted(full_page(owner, room_id)) == sorted(full_page(guest, room_id))


@pytest.mark.parametrize("creator_side", ["synapse", "ours"])
def test_join_public_room_by_alias(peers: tuple[Peer, Peer], creator_side: str) -> None:
    """No invite: the other server's user joins a public room by its alias (directory lookup,
    then make_join/send_join through the alias's server), and they talk."""
    ours, synapse = peers
    owner_peer, guest_peer = (synapse, ours) if creator_side == "synapse" else (ours, synapse)
    owner, guest = _user(owner_peer, "owner"), _user(guest_peer, "guest")
    alias_name = random_localpart("pub")
    resp = owner.api.post(f"{V3}/createRoom", {"preset": "public_chat", "room_alias_name": alias_name})
    assert resp.status == 200, resp.describe()
    room_id = resp.body["room_id"]
    resp = guest.api.post(f"{V3}/join/{q(f'#{alias_name}:{owner_peer.name}')}", {})
    assert resp.status == 200, resp.describe()
    assert resp.body["room_id"] == room_id
    owner.wait(
        "the guest's join",
        lambda: any(
            e["state_key"] == guest.user_id and e["content"]["membership"] == "join"
            for e in owner.events(room_id, "m.room.member")
        ),
    )
    event_id = guest.text(room_id, "found you through the directory")
    owner.wait("the guest's message", lambda: event_id in {e["event_id"] for e in owner.events(room_id)})
    assert full_page(owner, room_id) == full_page(guest, room_id)
