"""Micro-benchmark: outbound federation fan-out, a room's messages delivered to N other servers.

    python -m bench.federation_fanout [--destinations 20] [--messages 200]

Our server runs in process (aiohttp test server, SQLite) with the real outbound sender
(federation/sender/: one persisted queue per destination, transactions of up to 50 PDUs, signed
X-Matrix requests over TLS). The destinations are fake receivers on loopback (one TLS listener
each, a throwaway CA the sender is told to trust) that answer 200 to every PUT /send and count the
PDUs. A public room has one member from each destination; a local user sends `--messages`
messages, one after the other through the client API. Measured: the client's send latency
(sending never waits for federation), and the time until every destination holds every message,
as PDU deliveries per second (messages x destinations / elapsed).

Needs `openssl` (for the throwaway CA).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from signedjson.key import generate_signing_key

from homeserver.app import SERVICES, create_app_from_config
from homeserver.config import build_config
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events.builder import build_event
from homeserver.events.context import EventContext, EventKind
from tests.clients.federation_harness import make_ca_and_leaf

OPEN = {"per_second": 1_000_000, "burst_count": 1_000_000}


class Receiver:
    """One fake destination: counts message PDUs, notes when the last expected one arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.bodies: set[str] = set()
        self.transactions = 0
        self.done = asyncio.Event()
        self.name = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.transactions += 1
        for pdu in body.get("pdus", []):
            if pdu.get("type") == "m.room.message":
                self.bodies.add(pdu["content"]["body"])
        if len(self.bodies) >= self.expected:
            self.done.set()
        return web.json_response({"pdus": {}})


async def start_receivers(
    count: int, expected: int, chain: Path, key: Path
) -> tuple[list[Receiver], list[web.AppRunner]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(chain), str(key))
    receivers, runners = [], []
    for _ in range(count):
        receiver = Receiver(expected)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_put("/_matrix/federation/v1/send/{txn_id}", receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        receiver.name = f"127.0.0.1:{port}"
        receivers.append(receiver)
        runners.append(runner)
    return receivers, runners


async def run(destinations: int, messages: int, workdir: Path) -> None:
    ca, chain, key = make_ca_and_leaf(workdir)
    receivers, runners = await start_receivers(destinations, messages, chain, key)
    config = build_config(
        {
            "server_name": "bench.local",
            "data_dir": str(workdir),
            "database": {"name": "sqlite3", "args": {"database": str(workdir / "hs.db")}},
            "registration_shared_secret": "s",
            "rc_message": OPEN,
            "rc_registration": OPEN,
            "trusted_key_servers": [],
            "federation_custom_ca_list": [str(ca)],
            "ip_range_whitelist": ["127.0.0.0/8"],
            "presence": {"enabled": False},
        }
    )
    client = TestClient(TestServer(create_app_from_config(config)))
    await client.start_server()
    try:
        services = client.server.app[SERVICES]
        nonce = (await (await client.get("/_synapse/admin/v1/register")).json())["nonce"]
        mac = hmac.new(b"s", f"{nonce}\x00alice\x00password-1\x00notadmin".encode(), hashlib.sha1)
        resp = await client.post(
            "/_synapse/admin/v1/register",
            json={"nonce": nonce, "username": "alice", "password": "password-1", "mac": mac.hexdigest()},
        )
        headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        resp = await client.post(
            "/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=headers
        )
        room_id = (await resp.json())["room_id"]
        # One member per destination, their joins persisted as received events.
        for receiver in receivers:
            await _remote_join(services, room_id, receiver.name)
        await asyncio.sleep(0.5)  # let the joins' own fan-out settle before timing
        latencies: list[float] = []
        started = time.perf_counter()
        for i in range(messages):
            t0 = time.perf_counter()
            resp = await client.put(
                f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/m{i}",
                json={"msgtype": "m.text", "body": f"message {i}"},
                headers=headers,
            )
            if resp.status != 200:
                raise SystemExit(f"send failed: {resp.status} {await resp.text()}")
            latencies.append(time.perf_counter() - t0)
        sent = time.perf_counter() - started
        await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in receivers)), timeout=300)
        elapsed = time.perf_counter() - started
        deliveries = destinations * messages
        transactions = sum(r.transactions for r in receivers)
        latencies.sort()
        print(f"{messages} messages to {destinations} destinations: all delivered in {elapsed:.2f} s")
        print(f"  {deliveries / elapsed:.0f} PDU deliveries/s, {transactions} transactions")
        print(
            f"  client send: {messages / sent:.0f} messages/s,"
            f" median {statistics.median(latencies) * 1000:.1f} ms,"
            f" p90 {latencies[int(len(latencies) * 0.9) - 1] * 1000:.1f} ms"
        )
    finally:
        await client.close()
        for runner in runners:
            await runner.cleanup()


async def _remote_join(services: Any, room_id: str, server: str) -> None:
    key = ServerSigningKey.from_signing_key(generate_signing_key("f1"))
    snapshot = await services.state.get(room_id)
    before = {k: e.event_id for k, e in snapshot.state.items()}
    user = f"@bob:{server}"
    auth_keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")]
    join = build_event(
        snapshot.version,
        room_id=room_id,
        sender=user,
        type="m.room.member",
        content={"membership": "join"},
        state_key=user,
        prev_event_ids=list(snapshot.extremities),
        auth_event_ids=[before[k] for k in auth_keys if k in before],
        depth=snapshot.depth + 1,
        origin_server_ts=services.clock.time_ms(),
        server_name=server,
        signing_key=key,
    )
    await services.persister.persist([EventContext(join, EventKind.REMOTE_NEW, before)])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--destinations", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(run(args.destinations, args.messages, Path(workdir)))


if __name__ == "__main__":
    main()
