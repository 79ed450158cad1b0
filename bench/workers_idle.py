"""Benchmark: per-process CPU and RSS of main + 2 client_readers + pusher at a steady 40 events/s.

    python -m bench.workers_idle [--server ours|synapse] [--rate 40] [--seconds 30] [--syncers 20]
                                 [--readers 2]

Starts a deployment of bench/deployments.py (ours: the topology of tests/scaleout; Synapse:
main + generic_worker client readers + a pusher worker; both on PostgreSQL and a private
redis-server), registers `--syncers` users who all sit in one room and long-poll /sync on the
readers (sticky, as the front door routes them), then sends `--rate` messages per second into the
room through main for `--seconds`, and prints for each process the CPU used (percent of one core)
and its RSS, first with no traffic (idle) then under the load, plus the delay from the start of a
send (persistence included) to the message arriving in a reader's /sync. `--readers 0` is one
process doing everything. The background load (other jobs on the machine) is measured before
the run. Not part of the test suite; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import deployments
from bench.client import Client
from bench.procset import background_load, snapshot, usage
from bench.procstat import db_cpu_seconds
from bench.stats import fmt_ms, summarize_ms


async def _register_all(base: str, shared_secret: str, count: int) -> list[tuple[str, str]]:
    """count users through shared-secret registration (the same on ours and on Synapse)."""
    async with Client(base, shared_secret) as client:
        users = await client.register_many(f"b{secrets.token_hex(3)}", count)
    return [(u.user_id, u.access_token) for u in users]


def _with_db(usage_: dict[str, Any], db_name: str | None, db_before: float | None, seconds: float) -> None:
    db_after = db_cpu_seconds(db_name)
    if db_before is not None and db_after is not None:
        usage_["postgres"] = {"cpu_percent": round(100 * max(0.0, db_after - db_before) / seconds, 2)}


async def run(server: str, rate: float, seconds: float, syncers: int, readers_n: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-workers-{server}-"))
    deployment = await asyncio.to_thread(deployments.start, server, workdir, readers_n)
    main = deployment.main_url
    readers = deployment.reader_urls or [main]  # --readers 0: one process does all
    procs = deployment.processes
    results: dict[str, Any] = {
        "deployment": deployment.label,
        "version": deployment.version,
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        results["background"] = await asyncio.to_thread(background_load, 2.0)
        accounts = await _register_all(main, deployment.shared_secret, syncers + 1)
        _, sender_token = accounts[0]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            auth = {"Authorization": f"Bearer {sender_token}"}
            async with http.post(
                f"{main}/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth
            ) as r:
                room = (await r.json())["room_id"]
            users = accounts[1:]
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
            before, db_before = snapshot(procs), db_cpu_seconds(deployment.db_name)
            await asyncio.sleep(seconds / 2)
            results["idle"] = usage(before, snapshot(procs), seconds / 2)
            _with_db(results["idle"], deployment.db_name, db_before, seconds / 2)

            before, db_before = snapshot(procs), db_cpu_seconds(deployment.db_name)
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
            results["load"] = usage(before, snapshot(procs), elapsed)
            _with_db(results["load"], deployment.db_name, db_before, elapsed)
            results["load"]["achieved_events_per_s"] = round(int(rate * seconds) / elapsed, 1)
            await asyncio.sleep(2)
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            results["send_to_reader_sync"] = summarize_ms(delays)
            results["send_latency"] = summarize_ms(send_latency)
    finally:
        await asyncio.to_thread(deployment.stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--server", choices=["ours", "synapse"], default="ours")
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--syncers", type=int, default=20)
    parser.add_argument("--readers", type=int, default=2, help="client_readers (0: main alone, no pusher)")
    parser.add_argument("--json-out", help="also append the results as one JSON line to this file")
    args = parser.parse_args()
    results = asyncio.run(run(args.server, args.rate, args.seconds, args.syncers, args.readers))
    if args.json_out:
        with open(args.json_out, "a") as fh:
            fh.write(json.dumps(results, separators=(",", ":")) + "\n")
    print(json.dumps(results, indent=2))
    delay = results["send_to_reader_sync"]
    print(f"send start -> reader sync: p50 {fmt_ms(delay.get('p50_ms'))}, p95 {fmt_ms(delay.get('p95_ms'))}")
    send = results["send_latency"]
    print(f"send latency (main): p50 {fmt_ms(send.get('p50_ms'))}, p95 {fmt_ms(send.get('p95_ms'))}")


if __name__ == "__main__":
    main()
