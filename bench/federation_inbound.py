"""Micro-benchmark: inbound federation, PDUs accepted per second through PUT /send/{txnId}.

    python -m bench.federation_inbound [--txns 40] [--pdus 50] [--db /tmp/bench-fed.db]

Our server runs in process (aiohttp test server, SQLite). A remote server (its signing key known
to the keyring, as after a key fetch) has a user in a public room created locally; it then sends
`--txns` transactions of `--pdus` chained messages each. Every PDU goes the whole way: X-Matrix
check of the transaction, format and size checks, ed25519 signature and content hash, auth against
its auth events, the state before it and the current state, and persistence. Prints PDUs/s and the
latency per transaction (median, p90).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from signedjson.key import generate_signing_key
from yarl import URL

from homeserver.app import SERVICES, create_app_from_config
from homeserver.config import build_config
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import sign_request
from homeserver.events.builder import build_event

REMOTE = "remote.bench"
OPEN = {"per_second": 1_000_000, "burst_count": 1_000_000}


async def run(txns: int, per_txn: int, workdir: Path) -> None:
    config = build_config(
        {
            "server_name": "bench.local",
            "data_dir": str(workdir),
            "database": {"name": "sqlite3", "args": {"database": str(workdir / "hs.db")}},
            "registration_shared_secret": "s",
            "rc_message": OPEN,
            "rc_registration": OPEN,
            "rc_federation": {"window_size": 1000, "sleep_limit": 100000, "reject_limit": 100000},
            "trusted_key_servers": [],
        }
    )
    client = TestClient(TestServer(create_app_from_config(config)))
    await client.start_server()
    try:
        services = client.server.app[SERVICES]
        key = ServerSigningKey.from_signing_key(generate_signing_key("b1"))
        services.keyring = InMemoryKeyring((ServerVerifyKey(REMOTE, key.key_id, key.verify_key, 2**62),))
        # a local creator (shared-secret registration) and a public room
        nonce = (await (await client.get("/_synapse/admin/v1/register")).json())["nonce"]
        mac = hmac.new(b"s", f"{nonce}\x00alice\x00password-1\x00notadmin".encode(), hashlib.sha1)
        resp = await client.post(
            "/_synapse/admin/v1/register",
            json={"nonce": nonce, "username": "alice", "password": "password-1", "mac": mac.hexdigest()},
        )
        token = (await resp.json())["access_token"]
        resp = await client.post(
            "/_matrix/client/v3/createRoom",
            json={"preset": "public_chat"},
            headers={"Authorization": f"Bearer {token}"},
        )
        room_id = (await resp.json())["room_id"]
        snapshot = await services.state.get(room_id)
        version, state = snapshot.version, {k: e.event_id for k, e in snapshot.state.items()}
        depth, prev = snapshot.depth, list(snapshot.extremities)
        user = f"@bob:{REMOTE}"
        ts = services.clock.time_ms()

        def event(etype: str, content: dict[str, Any], state_key: str | None = None) -> dict[str, Any]:
            nonlocal depth, prev, ts
            keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", user)]
            if etype == "m.room.member":
                keys.append(("m.room.join_rules", ""))
            depth += 1
            ts += 1
            built = build_event(
                version,
                room_id=room_id,
                sender=user,
                type=etype,
                content=content,
                state_key=state_key,
                prev_event_ids=prev,
                auth_event_ids=[state[k] for k in keys if k in state],
                depth=depth,
                origin_server_ts=ts,
                server_name=REMOTE,
                signing_key=key,
            )
            prev = [built.event_id]
            if state_key is not None:
                state[(etype, state_key)] = built.event_id
            return built.pdu

        async def send(pdus: list[dict[str, Any]], txn: str) -> None:
            body = {"origin": REMOTE, "origin_server_ts": ts, "pdus": pdus}
            path = f"/_matrix/federation/v1/send/{txn}"
            header = sign_request(
                key, origin=REMOTE, destination="bench.local", method="PUT", uri=path, content=body
            )
            resp = await client.put(URL(path, encoded=True), json=body, headers={"Authorization": header})
            result = await resp.json()
            errors = [r for r in result.get("pdus", {}).values() if r]
            if resp.status != 200 or errors:
                raise SystemExit(f"transaction {txn} failed: {resp.status} {errors[:1] or result}")

        await send([event("m.room.member", {"membership": "join"}, user)], "join")
        batches = [
            [
                event("m.room.message", {"msgtype": "m.text", "body": f"message {t}/{i}"})
                for i in range(per_txn)
            ]
            for t in range(txns)
        ]
        latencies = []
        started = time.perf_counter()
        for t, batch in enumerate(batches):
            t0 = time.perf_counter()
            await send(batch, f"t{t}")
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        total = txns * per_txn
        latencies.sort()
        print(f"{total} PDUs in {txns} transactions: {total / elapsed:.0f} PDUs/s")
        print(
            f"per transaction of {per_txn}: median {statistics.median(latencies) * 1000:.1f} ms,"
            f" p90 {latencies[int(len(latencies) * 0.9) - 1] * 1000:.1f} ms"
        )
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--txns", type=int, default=40)
    parser.add_argument("--pdus", type=int, default=50, help="PDUs per transaction (at most 50)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(run(args.txns, min(args.pdus, 50), Path(workdir)))


if __name__ == "__main__":
    main()
