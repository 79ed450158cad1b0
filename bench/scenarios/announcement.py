"""announcement: one room of N members (a whole school or company) where one poster (the teacher)
posts; every other member long-polls /sync.

Two phases, both measured:
- `quiet`: the poster sends K messages while nobody polls: server CPU per message is the cost of
  persisting one event into an N-member room with push-rule evaluation and unread counts for every
  member (no sync delivery). Divided by N it is the per-member cost.
- `live`: all N-1 members long-poll (quiet filter: this room's timeline, lazy members) and the
  poster sends K messages, `interval_ms` apart: delivery delay from the start of each PUT /send to
  the sync response carrying it, p50/p95/p99 over every (message, member); missing and duplicated
  deliveries must be 0.
One member's unread notification count is read at the end (it must count the quiet phase's posts).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.client import User
from bench.scenarios.base import Context, Param, Scenario, bounded_gather, sync_filter
from bench.scenarios.pollers import Poller, start_polls, stop_polls, wait_delivered
from bench.stats import fmt_ms, summarize_ms


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n = p["members"]
    k = p["messages"]
    ctx.log(f"announcement: {n} members")
    teacher = (await c.register_many(f"b{ctx.tag}at", 1))[0]
    members = await c.register_many(f"b{ctx.tag}am", n - 1)
    room_id = await c.create_room(teacher, name=f"announcements {ctx.tag}")
    await bounded_gather(members, lambda u: c.join(u, room_id), p["setup_concurrency"])
    flt = json.dumps(
        sync_filter(timeline_limit=100, lazy_members=True, rooms=[room_id], quiet=True), separators=(",", ":")
    )

    async def first(u: User) -> str:
        return str((await c.sync(u, filter_=flt))["next_batch"])

    ctx.log("announcement: initial syncs")
    tokens = await bounded_gather(members, first, 16)

    ctx.log(f"announcement: quiet phase, {k} posts, nobody polling")
    ctx.mark("quiet_start")
    for m in range(k):
        await c.send_message(teacher, room_id, f"quiet {ctx.tag} {m}")
    ctx.mark("quiet_end")
    quiet = ctx.measured("quiet_start", "quiet_end")

    prefix = f"ann{ctx.tag}:"
    pollers = [Poller(u, t, prefix) for u, t in zip(members, tokens, strict=True)]
    stop = asyncio.Event()
    ctx.log(f"announcement: {len(pollers)} long-polls, then {k} posts {p['interval_ms']} ms apart")
    tasks = await start_polls(c, pollers, flt, stop)
    await asyncio.sleep(p["settle_ms"] / 1000)
    sent: dict[str, float] = {}
    send_lat: list[float] = []
    ctx.mark("measure_start")
    for m in range(k):
        key = str(m)
        t0 = time.monotonic()
        sent[key] = t0
        await c.send_message(teacher, room_id, prefix + key)
        send_lat.append(time.monotonic() - t0)
        await asyncio.sleep(p["interval_ms"] / 1000)
    keys = set(sent)
    await wait_delivered(pollers, {u.user_id: keys for u in members}, p["drain_s"])
    ctx.mark("measure_end")
    await stop_polls(tasks, stop)

    delays = [p_.arrivals[key] - sent[key] for p_ in pollers for key in keys if key in p_.arrivals]
    body = await c.sync(members[0], since=tokens[0], timeout_ms=0)
    unread = (((body.get("rooms") or {}).get("join") or {}).get(room_id) or {}).get(
        "unread_notifications"
    ) or {}
    live = ctx.measured()
    quiet_cpu = quiet.get("server_cpu_s")
    return {
        "members": n,
        "messages": k,
        "expected_deliveries": len(pollers) * k,
        "delivered": len(delays),
        "missing": len(pollers) * k - len(delays),
        "duplicates": sum(p_.duplicates for p_ in pollers),
        "sync_errors": sum(p_.errors for p_ in pollers),
        **summarize_ms(delays, prefix="delay_"),
        **summarize_ms(send_lat, prefix="send_"),
        "quiet_cpu_ms_per_msg": round(quiet_cpu * 1000 / k, 2) if quiet_cpu is not None else None,
        "quiet_cpu_us_per_member": round(quiet_cpu * 1e6 / k / n, 2) if quiet_cpu is not None else None,
        "live_cpu_ms_per_msg": round(live["server_cpu_s"] * 1000 / k, 2)
        if live.get("server_cpu_s") is not None
        else None,
        "unread_notification_count": unread.get("notification_count"),
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['messages']} posts to {r['members'] - 1} long-polling members: delivered {r['delivered']}/"
        f"{r['expected_deliveries']}, missing {r['missing']}, duplicates {r['duplicates']}, "
        f"sync errors {r['sync_errors']}",
        f"delivery p50 {fmt_ms(r['delay_p50_ms'])}, p95 {fmt_ms(r['delay_p95_ms'])}, "
        f"p99 {fmt_ms(r['delay_p99_ms'])}; "
        f"send p50 {fmt_ms(r['send_p50_ms'])}",
        f"server CPU per post with nobody polling {r['quiet_cpu_ms_per_msg']} ms "
        f"({r['quiet_cpu_us_per_member']} µs per member), while delivering {r['live_cpu_ms_per_msg']} ms; "
        f"unread count seen {r['unread_notification_count']}",
    ]


SCENARIO = Scenario(
    name="announcement",
    help="one room of N members, one poster, everyone long-polling: delivery p50/p95/p99, cost per post",
    params=[
        Param("members", int, 500, 50, "room members including the poster"),
        Param("messages", int, 20, 5, "posts per phase"),
        Param("interval_ms", int, 250, 200, "pause between posts in the live phase"),
        Param("settle_ms", int, 1000, 500, "pause after opening the long-polls"),
        Param("drain_s", float, 60.0, 20.0, "how long delivery may take after the last post"),
        Param("setup_concurrency", int, 8, 8, "concurrent joins during setup"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("delay_p50_ms", "announcement: delivery p50 ms", "lower"),
        ("delay_p99_ms", "announcement: delivery p99 ms", "lower"),
        ("quiet_cpu_ms_per_msg", "announcement: CPU per post ms", "lower"),
    ],
)
