"""rooms: one user in many rooms (each with a few members and messages); incremental sync latency
when one room changes.

Two figures per iteration, each after a helper sends one message into a random room:
- `incr`: GET /sync?since=…&timeout=0 issued after the send returned: the cost of computing an
  incremental sync for a user in N rooms where one changed.
- `wake`: a long-poll /sync already waiting when the send starts: time from send start until the
  long-poll returns with the event.
The user's initial sync (unfiltered) is timed once as a by-product.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from bench.client import Deadline, timeline_events
from bench.scenarios.base import Context, Param, Scenario, build_rooms, sync_filter
from bench.stats import fmt_ms, summarize_ms


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n_rooms: int = p["rooms"]
    ctx.log(f"rooms: building {n_rooms} rooms with {p['members']} members and {p['messages']} messages each")
    owner = (await c.register_many(f"b{ctx.tag}ro", 1))[0]
    helpers = await c.register_many(f"b{ctx.tag}rh", max(p["members"], 1))
    room_ids = await build_rooms(
        ctx,
        owner,
        helpers,
        rooms=n_rooms,
        members=p["members"],
        messages=p["messages"],
        concurrency=p["setup_concurrency"],
    )
    flt = json.dumps(sync_filter(lazy_members=True), separators=(",", ":")) if p["lazy"] else None

    ctx.log("rooms: initial sync")
    t0 = time.monotonic()
    body = await c.sync(owner, filter_=flt, http_timeout=600)
    initial = time.monotonic() - t0
    rooms_seen = len(((body.get("rooms") or {}).get("join")) or {})
    since = str(body["next_batch"])

    rng = random.Random(1)
    incr: list[float] = []
    wake: list[float] = []
    sends: list[float] = []
    not_immediate = 0
    wake_missed = 0
    rooms_in_incr: list[int] = []

    async def wait_for(event_id: str, room_id: str, since_: str, deadline: Deadline) -> tuple[str, bool]:
        """Long-poll until event_id shows up (bounded); returns the new token and whether it did."""
        for _ in range(20):
            if deadline.expired():
                break
            b = await c.sync(
                owner, since=since_, timeout_ms=int(min(deadline.left(), 10) * 1000), filter_=flt
            )
            since_ = str(b["next_batch"])
            if any(ev.get("event_id") == event_id for ev in timeline_events(b, room_id)):
                return since_, True
        return since_, False

    ctx.log(f"rooms: {p['iterations']} incremental syncs (timeout=0) and {p['iterations']} long-poll wakes")
    ctx.mark("measure_start")
    for i in range(p["iterations"]):
        room_id = rng.choice(room_ids)
        helper = helpers[i % len(helpers)]
        if p["members"] == 0:
            helper = owner
        t_send = time.monotonic()
        event_id = await c.send_message(helper, room_id, f"{ctx.tag} incr {i}")
        sends.append(time.monotonic() - t_send)
        t0 = time.monotonic()
        b = await c.sync(owner, since=since, timeout_ms=0, filter_=flt)
        incr.append(time.monotonic() - t0)
        since = str(b["next_batch"])
        rooms_in_incr.append(len(((b.get("rooms") or {}).get("join")) or {}))
        if not any(ev.get("event_id") == event_id for ev in timeline_events(b, room_id)):
            not_immediate += 1
            since, _ = await wait_for(event_id, room_id, since, Deadline(15))

    for i in range(p["iterations"]):
        room_id = rng.choice(room_ids)
        helper = owner if p["members"] == 0 else helpers[i % len(helpers)]
        poll = asyncio.ensure_future(c.sync(owner, since=since, timeout_ms=30_000, filter_=flt))
        await asyncio.sleep(p["park_ms"] / 1000)
        t_send = time.monotonic()
        event_id = await c.send_message(helper, room_id, f"{ctx.tag} wake {i}")
        b = await poll
        t_got = time.monotonic()
        since = str(b["next_batch"])
        if any(ev.get("event_id") == event_id for ev in timeline_events(b, room_id)):
            wake.append(t_got - t_send)
        else:
            # Woken by something else (or too early): follow up until the event shows up.
            wake_missed += 1
            since, found = await wait_for(event_id, room_id, since, Deadline(15))
            if found:
                wake.append(time.monotonic() - t_send)
    ctx.mark("measure_end")

    return {
        "rooms": n_rooms,
        "rooms_in_initial_sync": rooms_seen,
        "initial_sync_ms": round(initial * 1000, 1),
        "iterations": p["iterations"],
        **summarize_ms(incr, prefix="incr_"),
        **summarize_ms(wake, prefix="wake_"),
        **summarize_ms(sends, prefix="send_"),
        "incr_not_immediate": not_immediate,
        "wake_missed": wake_missed,
        "rooms_per_incr_max": max(rooms_in_incr) if rooms_in_incr else None,
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"user in {r['rooms']} rooms (initial sync {fmt_ms(r['initial_sync_ms'])}, "
        f"{r['rooms_in_initial_sync']} rooms)",
        f"incremental sync after one room changed: p50 {fmt_ms(r['incr_p50_ms'])}, "
        f"p95 {fmt_ms(r['incr_p95_ms'])}, p99 {fmt_ms(r['incr_p99_ms'])} "
        f"({r['incr_not_immediate']} not immediate, max rooms in one response {r['rooms_per_incr_max']})",
        f"long-poll wake from send start: p50 {fmt_ms(r['wake_p50_ms'])}, p95 {fmt_ms(r['wake_p95_ms'])}, "
        f"p99 {fmt_ms(r['wake_p99_ms'])} ({r['wake_missed']} woken early); "
        f"send p50 {fmt_ms(r['send_p50_ms'])}",
    ]


SCENARIO = Scenario(
    name="rooms",
    help="incremental sync latency for a user in many rooms when one room changes",
    params=[
        Param("rooms", int, 500, 50, "rooms the user is in"),
        Param("members", int, 3, 2, "other members per room"),
        Param("messages", int, 3, 2, "messages per room at setup"),
        Param("iterations", int, 200, 15, "measured iterations (each of incr and wake)"),
        Param("park_ms", int, 50, 50, "pause to let the long-poll park before sending"),
        Param("lazy", int, 0, 0, "1 = sync with a lazy-loading filter"),
        Param("setup_concurrency", int, 8, 8, "concurrent room builders during setup"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("incr_p50_ms", "rooms: incremental sync p50 ms", "lower"),
        ("incr_p99_ms", "rooms: incremental sync p99 ms", "lower"),
        ("wake_p50_ms", "rooms: long-poll wake p50 ms", "lower"),
    ],
)
