"""cost_curve: how send CPU per message and incremental-sync latency grow with the work.

Two series, each built up cumulatively (the next point adds rooms/members to the previous one):
- rooms per user (`--rooms`, e.g. 10,100,1000): one user in n rooms (one other member each). At each
  point the user sends K messages into random rooms (server CPU per message) and, K times, a
  fellow member sends into a random room and the user syncs since its last token with timeout 0
  (incremental sync latency p50).
- members per room (`--members`, e.g. 10,100,1000): one room growing to m members. At each point a
  member sends K messages (server CPU per message: push rules and unread counts for m members) and
  one member's incremental sync after each send is timed.
The slope printed is the log-log slope between the first and the last point: 0 = flat (cost ∝
change, as the design promises for both), 1 = linear in n.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from typing import Any

from bench.client import User
from bench.scenarios.base import Context, Param, Scenario, bounded_gather
from bench.stats import fmt_ms


def slope(points: list[tuple[int, float | None]]) -> float | None:
    pts = [(x, y) for x, y in points if y]
    if len(pts) < 2 or pts[0][0] == pts[-1][0]:
        return None
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    return round(math.log(y1 / y0) / math.log(x1 / x0), 2)


async def measure(
    ctx: Context,
    sender: User,
    reader: User,
    rooms: list[str],
    poke: list[tuple[User, str]],
    k: int,
    since: str,
    tag: str,
) -> tuple[float | None, float | None, str]:
    """K sends by `sender` into random rooms (CPU/msg), then K pokes each followed by reader's sync."""
    c = ctx.client
    rng = random.Random(len(rooms))
    ctx.mark(f"{tag}_send_start")
    for m in range(k):
        await c.send_message(sender, rng.choice(rooms), f"curve {m}")
    ctx.mark(f"{tag}_send_end")
    cpu = ctx.measured(f"{tag}_send_start", f"{tag}_send_end").get("server_cpu_s")
    body = await c.sync(reader, since=since, timeout_ms=0)  # catch up on the sends
    since = str(body["next_batch"])
    lat: list[float] = []
    for _ in range(k):
        u, room = rng.choice(poke)
        await c.send_message(u, room, "poke")
        t0 = time.monotonic()
        body = await c.sync(reader, since=since, timeout_ms=0)
        lat.append(time.monotonic() - t0)
        since = str(body["next_batch"])
    cpu_ms = round(cpu * 1000 / k, 3) if cpu is not None else None
    return cpu_ms, round(statistics.median(lat) * 1000, 2), since


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    k = p["messages"]
    room_steps = [int(x) for x in str(p["rooms"]).split(",") if x]
    member_steps = [int(x) for x in str(p["members"]).split(",") if x]
    out: dict[str, Any] = {"rooms_points": [], "members_points": []}

    # ---- rooms per user
    me, other = await c.register_many(f"b{ctx.tag}kr", 2)
    rooms: list[str] = []
    since = str((await c.sync(me))["next_batch"])
    for n in room_steps:
        ctx.log(f"cost_curve: user in {n} rooms")

        async def make(_i: int) -> str:
            r = await c.create_room(me, name=f"curve {ctx.tag}")
            await c.join(other, r)
            return r

        rooms += await bounded_gather(range(n - len(rooms)), make, p["setup_concurrency"])
        since = str((await c.sync(me, since=since, timeout_ms=0, http_timeout=600))["next_batch"])
        cpu_ms, incr_ms, since = await measure(
            ctx, me, me, rooms, [(other, r) for r in rooms], k, since, f"r{n}"
        )
        out["rooms_points"].append({"rooms": n, "send_cpu_ms": cpu_ms, "incr_p50_ms": incr_ms})
        ctx.log(f"  send CPU {cpu_ms} ms/msg, incremental sync p50 {incr_ms} ms")

    # ---- members per room
    owner = (await c.register_many(f"b{ctx.tag}km", 1))[0]
    room = await c.create_room(owner, name=f"curve members {ctx.tag}")
    members: list[User] = [owner]
    reader_since = str((await c.sync(owner))["next_batch"])
    for m in member_steps:
        ctx.log(f"cost_curve: room of {m} members")
        new = await c.register_many(f"b{ctx.tag}km{len(members)}_", m - len(members), concurrency=16)
        await bounded_gather(new, lambda u: c.join(u, room), p["setup_concurrency"])
        members += new
        sender = members[1] if len(members) > 1 else owner
        reader_since = str((await c.sync(owner, since=reader_since, timeout_ms=0))["next_batch"])
        cpu_ms, incr_ms, reader_since = await measure(
            ctx, sender, owner, [room], [(sender, room)], k, reader_since, f"m{m}"
        )
        out["members_points"].append({"members": m, "send_cpu_ms": cpu_ms, "incr_p50_ms": incr_ms})
        ctx.log(f"  send CPU {cpu_ms} ms/msg, incremental sync p50 {incr_ms} ms")

    rp, mp = out["rooms_points"], out["members_points"]
    out["rooms_send_cpu_slope"] = slope([(x["rooms"], x["send_cpu_ms"]) for x in rp])
    out["rooms_incr_slope"] = slope([(x["rooms"], x["incr_p50_ms"]) for x in rp])
    out["members_send_cpu_slope"] = slope([(x["members"], x["send_cpu_ms"]) for x in mp])
    out["members_incr_slope"] = slope([(x["members"], x["incr_p50_ms"]) for x in mp])
    for series, pts in (("rooms", rp), ("members", mp)):
        if pts:
            out[f"{series}_first_send_cpu_ms"] = pts[0]["send_cpu_ms"]
            out[f"{series}_last_send_cpu_ms"] = pts[-1]["send_cpu_ms"]
            out[f"{series}_first_incr_ms"] = pts[0]["incr_p50_ms"]
            out[f"{series}_last_incr_ms"] = pts[-1]["incr_p50_ms"]
    return out


def summary(r: dict[str, Any]) -> list[str]:
    lines = []
    for series in ("rooms", "members"):
        pts = " | ".join(
            f"{x[series]}: send {x['send_cpu_ms']} ms CPU, sync {fmt_ms(x['incr_p50_ms'])}"
            for x in r[f"{series}_points"]
        )
        lines.append(f"{series}: {pts}")
        lines.append(
            f"  slope (log-log, first->last): send CPU {r[f'{series}_send_cpu_slope']}, "
            f"incremental sync {r[f'{series}_incr_slope']}"
        )
    return lines


SCENARIO = Scenario(
    name="cost_curve",
    help="send CPU per message and incremental sync latency as rooms per user and members per room grow",
    params=[
        Param("rooms", str, "10,100,1000", "10,50", "rooms per user, comma-separated"),
        Param("members", str, "10,100,1000", "10,50", "members per room, comma-separated"),
        Param("messages", int, 100, 20, "sends (and incremental syncs) per point"),
        Param("setup_concurrency", int, 8, 8, "concurrent builders during setup"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("rooms_send_cpu_slope", "cost_curve: send CPU slope over rooms/user", "lower"),
        ("rooms_incr_slope", "cost_curve: incremental sync slope over rooms/user", "lower"),
        ("members_send_cpu_slope", "cost_curve: send CPU slope over members/room", "lower"),
        ("members_incr_slope", "cost_curve: incremental sync slope over members/room", "lower"),
    ],
)
