"""Benchmark: message send latency while an appservice is down, against no appservice at all.

    python -m bench.appservice_dead [--messages 2000] [--appservices 3] [--seconds-down 0]

Starts the homeserver in-process (SQLite in a temporary directory) twice with the same load:

- `baseline`: no appservice registered;
- `dead`: `--appservices` registrations interested in every room (`rooms: ["!.*"]`) whose `url`
  is a closed loopback port, so every transaction fails and backs off;

then sends `--messages` messages one after another from one user into one room and prints the
send latency (p50/p95/p99) of each run, plus the dead appservices' queue state (window size,
pending transactions, failures). With `--seconds-down N` the appservices stay down for N more
seconds after the sends, then a listener is opened on their port and the time until every
message was delivered (in order) is printed. Not part of the test suite; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench.stats import fmt_ms, summarize_ms
from homeserver.app import SERVICES, create_app_from_config
from homeserver.config import build_config

OPEN = {"per_second": 100000, "burst_count": 1000000}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(data_dir: Path, registrations: list[str]) -> Any:
    return build_config(
        {
            "server_name": "bench.local",
            "data_dir": str(data_dir),
            "database": {"name": "sqlite3", "args": {"database": str(data_dir / "hs.db")}},
            "registration_shared_secret": "bench",
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "bcrypt_rounds": 4,
            "rc_message": OPEN,
            "rc_registration": OPEN,
            "rc_login": {"address": OPEN, "account": OPEN, "failed_attempts": OPEN},
            "app_service_config_files": registrations,
        }
    )


async def _run(
    label: str, registrations: list[str], data_dir: Path, args: argparse.Namespace, port: int
) -> None:
    client = TestClient(TestServer(create_app_from_config(_config(data_dir, registrations))))
    await client.start_server()
    try:
        resp = await client.post(
            "/_matrix/client/v3/register",
            json={"username": "sender", "password": "bench-pass-1", "auth": {"type": "m.login.dummy"}},
        )
        token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        resp = await client.post("/_matrix/client/v3/createRoom", json={}, headers=headers)
        room = (await resp.json())["room_id"]
        latencies = []
        started = time.perf_counter()
        for i in range(args.messages):
            t0 = time.perf_counter()
            resp = await client.put(
                f"/_matrix/client/v3/rooms/{room}/send/m.room.message/b{i}",
                json={"msgtype": "m.text", "body": f"message {i}"},
                headers=headers,
            )
            await resp.read()
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        stats = summarize_ms(latencies)
        print(
            f"{label:9} {args.messages / elapsed:8.0f} msg/s   p50 {fmt_ms(stats['p50_ms'])}"
            f"   p95 {fmt_ms(stats['p95_ms'])}   p99 {fmt_ms(stats['p99_ms'])}"
            f"   max {fmt_ms(stats['max_ms'])}"
        )
        sender = client.server.app[SERVICES].appservice_sender
        for queue in sender.queues.values():
            print(
                f"          {queue.id}: window {len(queue.window)}, pending transactions"
                f" {queue.pending_transactions}, failures {queue.backoff.failures},"
                f" retry in {queue.backoff.interval:.0f} s"
            )
        if sender.queues and args.seconds_down >= 0 and label == "dead":
            await asyncio.sleep(args.seconds_down)
            await _recover(sender, port, args.messages)
    finally:
        await client.close()


async def _recover(sender: Any, port: int, expected: int) -> None:
    bodies: dict[str, list[str]] = {}
    done = asyncio.Event()

    async def transaction(request: web.Request) -> web.Response:
        body = await request.json()
        got = bodies.setdefault(request.match_info["name"], [])
        got.extend(e["content"]["body"] for e in body["events"] if e["type"] == "m.room.message")
        if all(len(bodies.get(q, [])) >= expected for q in sender.queues):
            done.set()
        return web.json_response({})

    app = web.Application()
    app.router.add_put("/{name}/_matrix/app/v1/transactions/{txnId}", transaction)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    t0 = time.perf_counter()
    for queue in sender.queues.values():
        queue.force_retry()  # as a ping would; else the next retry is up to 512 s away
    try:
        await asyncio.wait_for(done.wait(), 600)
        in_order = all(b == [f"message {i}" for i in range(expected)] for b in bodies.values())
        print(
            f"          all delivered {time.perf_counter() - t0:.1f} s after recovery; in order: {in_order}"
        )
    finally:
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--appservices", type=int, default=3)
    parser.add_argument("--seconds-down", type=float, default=0.0)
    args = parser.parse_args()
    port = _free_port()  # nothing listens here until recovery
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        regs = []
        for n in range(args.appservices):
            path = base / f"as{n}.yaml"
            registration = {
                "id": f"as{n}",
                "url": f"http://127.0.0.1:{port}/as{n}",
                "as_token": f"as-token-{n}",
                "hs_token": f"hs-token-{n}",
                "sender_localpart": f"as{n}bot",
                "namespaces": {"users": [], "aliases": [], "rooms": [{"exclusive": False, "regex": "!.*"}]},
            }
            path.write_text(yaml.safe_dump(registration))
            regs.append(str(path))
        (base / "baseline").mkdir()
        (base / "dead").mkdir()
        await _run("baseline", [], base / "baseline", args, port)
        await _run("dead", regs, base / "dead", args, port)


if __name__ == "__main__":
    asyncio.run(main())
