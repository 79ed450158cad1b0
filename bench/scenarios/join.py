"""join: J users join one public room one after another, the room growing to J members.

Figures: join latency p50/p95/p99 and the mean of the first and last tenth (how joins slow down as
the room grows)."""

from __future__ import annotations

import time
from typing import Any

from bench.scenarios.base import Context, Param, Scenario
from bench.stats import fmt_ms, fmt_num, rate, summarize_ms


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    j: int = p["joins"]
    ctx.log(f"join: registering {j} users")
    creator = (await c.register_many(f"b{ctx.tag}jc", 1))[0]
    users = await c.register_many(f"b{ctx.tag}j", j, concurrency=8)
    room_id = await c.create_room(creator, name=f"join {ctx.tag}")
    lat: list[float] = []
    failures = 0
    ctx.log(f"join: {j} sequential joins")
    ctx.mark("measure_start")
    t_all = time.monotonic()
    for u in users:
        t0 = time.monotonic()
        try:
            await c.join(u, room_id)
        except Exception:
            failures += 1
            continue
        lat.append(time.monotonic() - t0)
    wall = time.monotonic() - t_all
    ctx.mark("measure_end")
    tenth = max(1, len(lat) // 10)
    return {
        "joins": len(lat),
        "failures": failures,
        "joins_per_s": rate(len(lat), wall),
        **summarize_ms(lat, prefix="join_"),
        "first_tenth_mean_ms": round(sum(lat[:tenth]) / tenth * 1000, 2) if lat else None,
        "last_tenth_mean_ms": round(sum(lat[-tenth:]) / tenth * 1000, 2) if lat else None,
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['joins']} sequential joins ({r['failures']} failed), {fmt_num(r['joins_per_s'], 'joins/s')}",
        f"join latency p50 {fmt_ms(r['join_p50_ms'])}, p95 {fmt_ms(r['join_p95_ms'])}, "
        f"p99 {fmt_ms(r['join_p99_ms'])}; "
        f"first tenth {fmt_ms(r['first_tenth_mean_ms'])}, last tenth {fmt_ms(r['last_tenth_mean_ms'])}",
    ]


SCENARIO = Scenario(
    name="join",
    help="J users join one room one after another",
    params=[Param("joins", int, 200, 20, "users joining (the room's final size)")],
    run=run,
    summary=summary,
    headline=[
        ("join_p50_ms", "join: latency p50 ms", "lower"),
        ("join_p99_ms", "join: latency p99 ms", "lower"),
        ("last_tenth_mean_ms", "join: last tenth mean ms", "lower"),
    ],
)
