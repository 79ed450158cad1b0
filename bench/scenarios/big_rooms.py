"""big_rooms: U users, R rooms of M members each (members drawn round robin from the U users, so
each user is in about R*M/U rooms), X messages per room. The shape of the published
"200 users x 300 rooms x 300 members" comparison, scaled to this machine.

Measured: (1) the full initial /sync (no filter: all state, as a fresh client without lazy loading)
of S users one after another (`--concurrency` at a time), each from a device that never synced:
p50/p95 per user, server CPU and peak RSS over the phase; (2) incremental sync of one user when one
of its rooms changes (a member sends, then GET /sync?since=…&timeout=0): p50/p95.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.client import User
from bench.scenarios.base import Context, Param, Scenario, bounded_gather
from bench.stats import fmt_ms, summarize_ms


async def build(
    ctx: Context, users: list[User], rooms: int, members: int, messages: int, conc: int
) -> tuple[list[str], list[list[User]]]:
    """R rooms; room i is created by users[i % U] and joined by the next M-1 users (round robin)."""
    c = ctx.client
    n = len(users)
    out: list[list[User]] = [[] for _ in range(rooms)]
    room_ids: list[str] = [""] * rooms
    done = 0

    async def make(i: int) -> None:
        nonlocal done
        room_members = [users[(i + k) % n] for k in range(min(members, n))]
        room_ids[i] = await c.create_room(room_members[0], name=f"big {ctx.tag} {i}")
        for u in room_members[1:]:
            await c.join(u, room_ids[i])
        for m in range(messages):
            await c.send_message(room_members[m % len(room_members)], room_ids[i], f"big {i} msg {m}")
        out[i] = room_members
        done += 1
        if done % 10 == 0:
            ctx.log(f"  {done}/{rooms} rooms built")

    await bounded_gather(range(rooms), make, conc)
    return room_ids, out


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n_users, n_rooms, n_members = p["users"], p["rooms"], p["members"]
    ctx.log(f"big_rooms: {n_users} users, {n_rooms} rooms x {n_members} members, {p['messages']} msgs each")
    users = await c.register_many(f"b{ctx.tag}g", n_users)
    t_build = time.monotonic()
    room_ids, members_of = await build(ctx, users, n_rooms, n_members, p["messages"], p["setup_concurrency"])
    build_s = time.monotonic() - t_build
    syncers = users[: min(p["syncers"], n_users)]

    # Fresh devices (not timed) so that no sync cache of any kind can answer.
    devices = await bounded_gather(syncers, c.login, 4)
    times: list[float] = []
    shapes: list[int] = []

    async def initial(u: User) -> str:
        t0 = time.monotonic()
        body = await c.sync(u, http_timeout=1200)
        times.append(time.monotonic() - t0)
        joined = ((body.get("rooms") or {}).get("join")) or {}
        shapes.append(sum(len((r.get("state") or {}).get("events") or []) for r in joined.values()))
        return str(body["next_batch"])

    ctx.log(f"big_rooms: {len(devices)} full initial syncs, {p['concurrency']} at a time")
    ctx.mark("measure_start")
    tokens = await bounded_gather(devices, initial, p["concurrency"])
    ctx.mark("measure_end")

    # Incremental: user 0's rooms; a fellow member sends, user 0 syncs since its token.
    me = devices[0]
    mine = [i for i, ms in enumerate(members_of) if any(u.user_id == me.user_id for u in ms)]
    rng = random.Random(7)
    since = tokens[0]
    incr: list[float] = []
    rooms_in_incr: list[int] = []
    ctx.mark("incr_start")
    for _ in range(p["iterations"]):
        i = rng.choice(mine)
        sender = (
            next(u for u in members_of[i] if u.user_id != me.user_id) if len(members_of[i]) > 1 else users[0]
        )
        await c.send_message(sender, room_ids[i], "big incr")
        t0 = time.monotonic()
        body = await c.sync(me, since=since, timeout_ms=0)
        incr.append(time.monotonic() - t0)
        rooms_in_incr.append(len(((body.get("rooms") or {}).get("join")) or {}))
        since = str(body["next_batch"])
    ctx.mark("incr_end")
    await asyncio.sleep(0)
    phase = ctx.measured()
    return {
        "users": n_users,
        "rooms": n_rooms,
        "members": n_members,
        "rooms_per_user": round(n_rooms * min(n_members, n_users) / n_users, 1),
        "syncers": len(devices),
        "build_s": round(build_s, 1),
        "state_events_per_sync": max(shapes) if shapes else 0,
        **summarize_ms(times, prefix="initial_"),
        "initial_server_cpu_s": phase.get("server_cpu_s"),
        "initial_cpu_ms_per_sync": (
            round(phase["server_cpu_s"] * 1000 / len(devices), 1)
            if phase.get("server_cpu_s") is not None
            else None
        ),
        "peak_rss_mib": phase.get("rss_peak_mib"),
        **summarize_ms(incr, prefix="incr_"),
        "incr_rooms_in_response_max": max(rooms_in_incr) if rooms_in_incr else 0,
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['users']} users x {r['rooms']} rooms x {r['members']} members "
        f"({r['rooms_per_user']} rooms/user, "
        f"built in {r['build_s']} s); {r['state_events_per_sync']} state events per full sync",
        f"initial sync of {r['syncers']} users: p50 {fmt_ms(r['initial_p50_ms'])}, "
        f"p95 {fmt_ms(r['initial_p95_ms'])}, "
        f"server CPU {r['initial_server_cpu_s']} s ({r['initial_cpu_ms_per_sync']} ms/sync), "
        f"peak RSS {r['peak_rss_mib']} MiB",
        f"incremental sync, one room changed: p50 {fmt_ms(r['incr_p50_ms'])}, p95 {fmt_ms(r['incr_p95_ms'])}",
    ]


SCENARIO = Scenario(
    name="big_rooms",
    help="U users x R rooms of M members: per-user full initial sync, CPU, peak RSS, incremental sync",
    params=[
        Param("users", int, 50, 10, "users (U)"),
        Param("rooms", int, 50, 10, "rooms (R)"),
        Param("members", int, 50, 10, "members per room (M, at most U)"),
        Param("messages", int, 5, 2, "messages per room"),
        Param("syncers", int, 20, 5, "users whose initial sync is timed"),
        Param("concurrency", int, 1, 1, "initial syncs at a time"),
        Param("iterations", int, 30, 10, "incremental syncs"),
        Param("setup_concurrency", int, 8, 8, "concurrent room builders during setup"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("initial_p50_ms", "big_rooms: initial sync p50 ms", "lower"),
        ("initial_p95_ms", "big_rooms: initial sync p95 ms", "lower"),
        ("peak_rss_mib", "big_rooms: peak RSS MiB", "lower"),
        ("incr_p50_ms", "big_rooms: incremental p50 ms", "lower"),
    ],
)
