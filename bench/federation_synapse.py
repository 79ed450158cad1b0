"""Side-by-side with Synapse: messages from a user on one server reaching a user on the other.

    python -m bench.federation_synapse [--messages 200]

Starts our server and Synapse (from `bench/.synapse-venv`, `python bench/synapse_ref.py install`)
federating over TLS on loopback, exactly as tests/clients/test_synapse_federation.py does. A room
is made on each side and joined by a user of the other. Then, each way, the sender posts
`--messages` messages back to back through the client API, and the time until the receiving
server's `/messages` holds all of them is measured: the sending server's outbound queue plus the
receiving server's inbound pipeline (signatures, auth, persistence), as messages per second.
"Ours -> Synapse" is our sender with Synapse's inbound; "Synapse -> ours" the reverse.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import count
from pathlib import Path

from bench import synapse_ref
from synapse_compat_tests.client import V3, q, random_localpart, register_user
from tests.clients.test_federation_scenarios import User, shared_room
from tests.clients.test_synapse_federation import Peer, federating_pair


def _user(peer: Peer, localpart: str) -> User:
    user_id, token, _ = register_user(peer.client, peer.shared_secret, random_localpart(localpart))
    user = User(user_id, peer.client.with_token(token))
    user.sync_once(0)
    return user


def _count_on(receiver: User, room_id: str, prefix: str) -> int:
    resp = receiver.api.get(f"{V3}/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "1000"})
    assert resp.status == 200, resp.describe()
    return sum(
        1
        for e in resp.body["chunk"]
        if e["type"] == "m.room.message" and str(e["content"].get("body", "")).startswith(prefix)
    )


def one_way(origin: Peer, target: Peer, messages: int) -> tuple[float, float]:
    """(messages/s delivered, client sends/s) from a user of `origin` to a user of `target`."""
    owner, guest = _user(origin, "sender"), _user(target, "receiver")
    room_id = shared_room(owner, [guest], server_name=origin.name)
    prefix = f"bench {time.monotonic_ns()} "
    started = time.perf_counter()
    for i in range(messages):
        owner.text(room_id, f"{prefix}{i}")
    sent = time.perf_counter() - started
    for _ in count():
        if _count_on(guest, room_id, prefix) >= messages:
            break
        if time.perf_counter() - started > 600:
            raise SystemExit("not all messages arrived within 10 minutes")
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    return messages / elapsed, messages / sent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    synapse_ref.install()
    with tempfile.TemporaryDirectory() as workdir:
        names = count()

        def mkdir(name: str) -> Path:
            path = Path(workdir) / f"{name}{next(names)}"
            path.mkdir()
            return path

        with federating_pair(mkdir) as (ours, synapse):
            for label, origin, target in (
                ("ours -> Synapse", ours, synapse),
                ("Synapse -> ours", synapse, ours),
            ):
                delivered, sends = one_way(origin, target, args.messages)
                print(
                    f"{label}: {args.messages} messages delivered at {delivered:.0f}/s"
                    f" (the sender's client posted {sends:.0f}/s)"
                )


if __name__ == "__main__":
    main()
