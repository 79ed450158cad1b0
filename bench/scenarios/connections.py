"""connections: N users in N/G rooms: user i is in room i//G, and the upper half of each group
(i mod G >= G/2) also in the next room, so 1.5 rooms per user and 1.5*G members per room; all N
long-polling /sync at once, while members post at a steady rate (`rate` msg/s from random
members into one of their rooms) for `duration_s`.

Measured: delivery delay (start of PUT /send until the member's sync response carries the message)
over every (message, room member) pair, sender included: p50/p95/p99, missing, duplicates; RSS with
all polls held minus RSS before they were opened, per connection; server CPU share over the
steady phase.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from bench.client import User
from bench.scenarios.base import Context, Param, Scenario, bounded_gather, sync_filter
from bench.scenarios.pollers import Poller, start_polls, stop_polls, wait_delivered
from bench.stats import fmt_ms, summarize_ms


def fd_count(pid: int | None) -> int | None:
    import os

    if not pid:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n, g = p["users"], p["group"]
    n_rooms = max(1, n // g)
    ctx.log(f"connections: {n} users, {n_rooms} rooms of ~{g * 3 // 2}, 1.5 rooms per user")
    users = await c.register_many(f"b{ctx.tag}c", n, concurrency=16)
    # room r holds users r*g..r*g+g-1 (first grouping) and, for r's second grouping, users shifted by g//2
    rooms: list[str] = [""] * n_rooms

    async def make(r: int) -> None:
        rooms[r] = await c.create_room(users[r * g], name=f"conn {ctx.tag} {r}")

    await bounded_gather(range(n_rooms), make, 8)
    member_rooms: dict[str, list[int]] = {u.user_id: [] for u in users}
    room_members: list[list[User]] = [[] for _ in range(n_rooms)]
    joins: list[tuple[User, int]] = []
    for i, u in enumerate(users):
        for r in {min(i // g, n_rooms - 1), ((i + g // 2) // g) % n_rooms}:
            member_rooms[u.user_id].append(r)
            room_members[r].append(u)
            if i != r * g:
                joins.append((u, r))
    done = 0

    async def join(j: tuple[User, int]) -> None:
        nonlocal done
        await c.join(j[0], rooms[j[1]])
        done += 1
        if done % 1000 == 0:
            ctx.log(f"  {done}/{len(joins)} joins")

    await bounded_gather(joins, join, p["setup_concurrency"])
    flt = json.dumps(sync_filter(timeline_limit=50, lazy_members=True, quiet=True), separators=(",", ":"))

    async def first(u: User) -> str:
        return str((await c.sync(u, filter_=flt))["next_batch"])

    ctx.log("connections: initial syncs")
    tokens = await bounded_gather(users, first, 16)
    prefix = f"con{ctx.tag}:"
    pollers = [Poller(u, t, prefix) for u, t in zip(users, tokens, strict=True)]
    pid = ctx.monitor.pid
    ctx.mark("polls_start")
    fds_before = fd_count(pid)
    stop = asyncio.Event()
    ctx.log(f"connections: opening {n} long-polls")
    tasks = await start_polls(c, pollers, flt, stop)
    # wait (bounded) until the server holds them all
    end = time.monotonic() + 60
    while time.monotonic() < end:
        fds = fd_count(pid)
        if fds is None or fds_before is None or fds - fds_before >= n * 0.98:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)
    held = (fd_count(pid) or 0) - (fds_before or 0) if pid else None
    ctx.mark("polls_held")
    m0, m1 = ctx.monitor.marks.get("polls_start"), ctx.monitor.marks.get("polls_held")
    before_mib = round(m0.rss / 1048576, 1) if m0 else None
    held_mib = round(m1.rss / 1048576, 1) if m1 else None

    rng = random.Random(3)
    sent: dict[str, float] = {}
    expected: dict[str, set[str]] = {u.user_id: set() for u in users}
    total = int(p["rate"] * p["duration_s"])
    interval = 1.0 / p["rate"]
    ctx.log(f"connections: {total} messages at {p['rate']} msg/s")
    send_tasks = []
    send_failures = 0

    async def send(u: User, r: int, key: str) -> None:
        nonlocal send_failures
        try:
            await c.send_message(u, rooms[r], prefix + key)
        except Exception:
            send_failures += 1

    ctx.mark("measure_start")
    t_start = time.monotonic()
    for m in range(total):
        # a steady schedule: sleep to the m-th slot, do not wait for the send to finish
        await asyncio.sleep(max(0.0, t_start + m * interval - time.monotonic()))
        u = users[rng.randrange(n)]
        r = rng.choice(member_rooms[u.user_id])
        key = str(m)
        sent[key] = time.monotonic()
        for member in room_members[r]:
            expected[member.user_id].add(key)
        send_tasks.append(asyncio.ensure_future(send(u, r, key)))
    await asyncio.gather(*send_tasks)
    await wait_delivered(pollers, expected, p["drain_s"])
    ctx.mark("measure_end")
    await stop_polls(tasks, stop)
    phase = ctx.measured()
    delays = [
        pl.arrivals[key] - sent[key]
        for pl in pollers
        for key in expected[pl.user.user_id]
        if key in pl.arrivals
    ]
    n_expected = sum(len(v) for v in expected.values())
    return {
        "users": n,
        "rooms": n_rooms,
        "messages": total - send_failures,
        "send_failures": send_failures,
        "expected_deliveries": n_expected,
        "delivered": len(delays),
        "missing": n_expected - len(delays),
        "duplicates": sum(pl.duplicates for pl in pollers),
        "sync_errors": sum(pl.errors for pl in pollers),
        "polls_held_by_server": held,
        **summarize_ms(delays, prefix="delay_"),
        "rss_before_polls_mib": before_mib,
        "rss_holding_mib": held_mib,
        "rss_per_connection_kib": round((held_mib - before_mib) * 1024 / n, 2)
        if held_mib and before_mib
        else None,
        "server_cpu_share": (
            round(phase["server_cpu_s"] / phase["wall_s"], 3)
            if phase.get("wall_s") and phase.get("server_cpu_s") is not None
            else None
        ),
        "server_cpu_ms_per_msg": (
            round(phase["server_cpu_s"] * 1000 / max(1, total), 2)
            if phase.get("server_cpu_s") is not None
            else None
        ),
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['users']} connected users ({r['polls_held_by_server']} sockets held), {r['rooms']} rooms: "
        f"{r['messages']} "
        f"messages, delivered {r['delivered']}/{r['expected_deliveries']}, missing {r['missing']}, "
        f"duplicates {r['duplicates']}, sync errors {r['sync_errors']}",
        f"delivery p50 {fmt_ms(r['delay_p50_ms'])}, p95 {fmt_ms(r['delay_p95_ms'])}, "
        f"p99 {fmt_ms(r['delay_p99_ms'])}",
        f"RSS {r['rss_before_polls_mib']} -> {r['rss_holding_mib']} MiB holding the polls "
        f"({r['rss_per_connection_kib']} KiB per connection); server CPU share {r['server_cpu_share']}, "
        f"{r['server_cpu_ms_per_msg']} ms per message",
    ]


SCENARIO = Scenario(
    name="connections",
    help="N users long-polling at once, in 1-2 rooms each, steady message rate: delivery p95, RSS/connection",
    params=[
        Param("users", int, 10_000, 200, "connected users"),
        Param("group", int, 20, 10, "members per room"),
        Param("rate", float, 20.0, 10.0, "messages per second"),
        Param("duration_s", float, 30.0, 5.0, "how long to send"),
        Param("drain_s", float, 60.0, 20.0, "how long delivery may take after the last send"),
        Param("setup_concurrency", int, 16, 8, "concurrent joins during setup"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("delay_p95_ms", "connections: delivery p95 ms", "lower"),
        ("rss_per_connection_kib", "connections: RSS per connection KiB", "lower"),
    ],
)
