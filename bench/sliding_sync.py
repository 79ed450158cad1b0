"""Benchmark: simplified sliding sync first-page latency for a user in many rooms.

    python -m bench.sliding_sync --base-url http://127.0.0.1:8008 --shared-secret S [--rooms 1000]
    python -m bench.sliding_sync --launch sqlite [--rooms 1000]      # starts our server itself

One user creates `--rooms` rooms (every room named, every 10th with a message), then the script
measures the request Element X makes on start: a fresh connection (no `pos`) asking for the first
20 rooms of a list in recency order with `timeline_limit` 1 and Element X's `required_state`. It
reports the first (cold) request and the p50/p95 of `--repeat` further fresh connections, then the
p50 of incremental requests with nothing new (`pos`, `timeout=0`). Runs unchanged against Synapse
(bench/synapse_ref.py). Nothing is asserted; figures go to docs/sliding-sync.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.client import Client, User
from bench.stats import summarize_ms

SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

# What Element X asks for in its room list (matrix-rust-sdk's room list service).
ELEMENT_X_STATE = [
    ["m.room.encryption", ""],
    ["m.room.member", "$LAZY"],
    ["m.room.member", "$ME"],
    ["m.room.name", ""],
    ["m.room.canonical_alias", ""],
    ["m.room.power_levels", ""],
    ["m.room.join_rules", ""],
    ["m.room.avatar", ""],
    ["m.room.create", ""],
]


def first_page_body(conn_id: str) -> dict[str, Any]:
    return {
        "conn_id": conn_id,
        "lists": {
            "all_rooms": {
                "ranges": [[0, 19]],
                "timeline_limit": 1,
                "required_state": ELEMENT_X_STATE,
                "filters": {"not_room_types": ["m.space"]},
            }
        },
        "extensions": {
            "account_data": {"enabled": True},
            "receipts": {"enabled": True, "rooms": ["*"], "lists": ["all_rooms"]},
            "typing": {"enabled": True},
            "e2ee": {"enabled": True},
            "to_device": {"enabled": True},
        },
    }


async def populate(client: Client, user: User, rooms: int, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            room_id = await client.create_room(user, name=f"room {i}", preset="private_chat")
            if i % 10 == 0:
                await client.send_message(user, room_id, f"message in room {i}")

    await asyncio.gather(*(one(i) for i in range(rooms)))


async def timed(
    client: Client, user: User, body: dict[str, Any], params: dict[str, str]
) -> tuple[float, Any]:
    start = time.perf_counter()
    res = await client.request("POST", SS, user=user, body=body, params=params, timeout=300)
    return time.perf_counter() - start, res


async def setup(base_url: str, shared_secret: str, rooms: int, concurrency: int) -> tuple[User, float]:
    async with Client(base_url, shared_secret) as client:
        user = await client.register(f"ssbench{uuid.uuid4().hex[:8]}")
        t0 = time.perf_counter()
        await populate(client, user, rooms, concurrency)
        return user, time.perf_counter() - t0


async def measure(base_url: str, user: User, repeat: int) -> dict[str, Any]:
    async with Client(base_url, "") as client:
        version = await client.server_version()
        cold, res = await timed(client, user, first_page_body("cold"), {"timeout": "0"})
        count = res["lists"]["all_rooms"]["count"]
        fresh = []
        for i in range(repeat):
            elapsed, res = await timed(client, user, first_page_body(f"c{i}"), {"timeout": "0"})
            fresh.append(elapsed)
        pos, conn = res["pos"], f"c{repeat - 1}"
        incremental = []
        for _ in range(repeat):
            elapsed, _res = await timed(client, user, first_page_body(conn), {"timeout": "0", "pos": pos})
            incremental.append(elapsed)
        return {
            "server": version,
            "list_count": count,
            "first_request_ms": round(cold * 1000, 1),
            **summarize_ms(fresh, prefix="first_page_"),
            **summarize_ms(incremental, prefix="incremental_"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url")
    parser.add_argument("--shared-secret")
    parser.add_argument("--launch", choices=("sqlite", "postgres"), help="start our server for the run")
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.launch:
        from synapse_compat_tests.launcher import launch

        workdir = Path(tempfile.mkdtemp(prefix="ss-bench-"))
        server = launch(args.launch, workdir)
        try:
            user, setup_s = asyncio.run(
                setup(server.base_url, server.shared_secret, args.rooms, args.concurrency)
            )
            result = {"rooms": args.rooms, "setup_s": round(setup_s, 1)}
            result["warm"] = asyncio.run(measure(server.base_url, user, args.repeat))
            if args.launch == "sqlite":
                # Again after a restart: nothing of the user's rooms in memory.
                server.stop()
                server = launch(args.launch, workdir)
                result["after_restart"] = asyncio.run(measure(server.base_url, user, args.repeat))
        finally:
            server.stop()
    else:
        if not args.base_url or not args.shared_secret:
            parser.error("--base-url and --shared-secret, or --launch")
        user, setup_s = asyncio.run(setup(args.base_url, args.shared_secret, args.rooms, args.concurrency))
        result = {"rooms": args.rooms, "setup_s": round(setup_s, 1)}
        result["warm"] = asyncio.run(measure(args.base_url, user, args.repeat))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
