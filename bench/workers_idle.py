"""Benchmark: per-process CPU and RSS of main + 2 client_readers + pusher at a steady 40 events/s.

    python -m bench.workers_idle [--rate 40] [--seconds 30] [--syncers 20] [--readers 2]

Starts the topology of tests/scaleout (processes on PostgreSQL and a private redis-server), logs in
`--syncers` users who all sit in one room and long-poll /sync on the readers (sticky, as the front
door routes them), then sends `--rate` messages per second into the room through main for
`--seconds`, and prints for each process the CPU used (percent of one core) and its RSS, first with
no traffic (idle) then under the load, plus the delay from the start of a send (persistence
included) to the message arriving in a reader's /sync. Synapse's measured tax is about 25% of
a core per idle worker, every
worker consuming every stream. Not part of the test suite; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procstat import _cpu_seconds, _rss_bytes
from bench.stats import fmt_ms, summarize_ms
from tests.scaleout.topology import Topology, start_topology

PASSWORD = "bench password 1"


async def _register(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    localpart = f"b{secrets.token_hex(5)}"
    body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    async with http.post(f"{base}/_matrix/client/v3/register", json=body) as resp:
        data = await resp.json()
        return data["user_id"], data["access_token"]


def _sample(topology: Topology) -> dict[str, tuple[float, int]]:
    procs = {"main": topology.main.process.pid} | {w.name: w.process.pid for w in topology.workers}
    return {name: (_cpu_seconds(pid), _rss_bytes(pid)) for name, pid in procs.items()}


def _usage(
    before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]], seconds: float
) -> dict[str, Any]:
    return {
        name: {
            "cpu_percent": round(100 * (after[name][0] - before[name][0]) / seconds, 2),
            "rss_mb": round(after[name][1] / 2**20, 1),
        }
        for name in after
    }


async def run(rate: float, seconds: float, syncers: int, readers_n: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    topology = await asyncio.to_thread(start_topology, workdir, readers_n, readers_n > 0)
    main = topology.main.base_url
    readers = [w.url for w in topology.readers] or [main]  # --readers 0: one process does all
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            _, sender_token = await _register(http, main)
            auth = {"Authorization": f"Bearer {sender_token}"}
            async with http.post(
                f"{main}/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth
            ) as r:
                room = (await r.json())["room_id"]
            users = [await _register(http, main) for _ in range(syncers)]
            for _, token in users:
                async with http.post(
                    f"{main}/_matrix/client/v3/join/{room}",
                    json={},
                    headers={"Authorization": f"Bearer {token}"},
                ) as r:
                    assert r.status == 200, await r.text()
            sent_at: dict[str, float] = {}
            delays: list[float] = []
            stop = asyncio.Event()

            async def syncer(token: str) -> None:
                reader = readers[int(hashlib.sha256(token.encode()).hexdigest(), 16) % len(readers)]
                headers = {"Authorization": f"Bearer {token}"}
                async with http.get(f"{reader}/_matrix/client/v3/sync?timeout=0", headers=headers) as r:
                    since = (await r.json())["next_batch"]
                while not stop.is_set():
                    url = f"{reader}/_matrix/client/v3/sync?timeout=30000&since={since}"
                    async with http.get(url, headers=headers) as r:
                        data = await r.json()
                    now = time.perf_counter()
                    since = data["next_batch"]
                    timeline = data.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
                    for event in timeline.get("events", []):
                        body = event.get("content", {}).get("body")
                        if body in sent_at:
                            delays.append(now - sent_at[body])

            tasks = [asyncio.create_task(syncer(token)) for _, token in users]
            await asyncio.sleep(3)  # everyone parked
            before = _sample(topology)
            await asyncio.sleep(seconds / 2)
            results["idle"] = _usage(before, _sample(topology), seconds / 2)

            before = _sample(topology)
            started = time.perf_counter()

            async def send(i: int) -> None:
                body = f"msg {i}"
                sent_at[body] = time.perf_counter()
                async with http.put(
                    f"{main}/_matrix/client/v3/rooms/{room}/send/m.room.message/{secrets.token_hex(8)}",
                    json={"msgtype": "m.text", "body": body},
                    headers=auth,
                ) as r:
                    assert r.status == 200, await r.text()
                send_latency.append(time.perf_counter() - sent_at[body])

            send_latency: list[float] = []
            sends = []
            for i in range(int(rate * seconds)):  # at the rate, not waiting for earlier sends
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                sends.append(asyncio.create_task(send(i)))
            await asyncio.gather(*sends)
            elapsed = time.perf_counter() - started
            results["load"] = _usage(before, _sample(topology), elapsed)
            results["load"]["achieved_events_per_s"] = round(int(rate * seconds) / elapsed, 1)
            await asyncio.sleep(2)
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            results["send_to_reader_sync"] = summarize_ms(delays)
            results["send_latency"] = summarize_ms(send_latency)
    finally:
        await asyncio.to_thread(topology.stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--syncers", type=int, default=20)
    parser.add_argument("--readers", type=int, default=2, help="client_readers (0: main alone, no pusher)")
    args = parser.parse_args()
    results = asyncio.run(run(args.rate, args.seconds, args.syncers, args.readers))
    print(json.dumps(results, indent=2))
    delay = results["send_to_reader_sync"]
    print(f"send start -> reader sync: p50 {fmt_ms(delay.get('p50_ms'))}, p95 {fmt_ms(delay.get('p95_ms'))}")
    send = results["send_latency"]
    print(f"send latency (main): p50 {fmt_ms(send.get('p50_ms'))}, p95 {fmt_ms(send.get('p95_ms'))}")


if __name__ == "__main__":
    main()
