"""send: S concurrent senders, M messages each, into one room.

Figures: send latency p50/p95/p99 (PUT /send until its 200), messages/s over the measured phase,
server CPU per message (server CPU seconds over the phase / messages).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.scenarios.base import Context, Param, Scenario
from bench.stats import fmt_ms, fmt_num, rate, summarize_ms


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    senders: int = p["senders"]
    per: int = p["messages"]
    ctx.log(f"send: registering {senders} senders")
    users = await c.register_many(f"b{ctx.tag}s", senders)
    room_id = await c.create_room(users[0], name=f"send {ctx.tag}")
    for u in users[1:]:
        await c.join(u, room_id)
    for i in range(p["warmup"]):
        await asyncio.gather(*(c.send_message(u, room_id, f"warmup {i}") for u in users))

    latencies: list[float] = []
    failures = 0

    async def sender(idx: int) -> None:
        nonlocal failures
        u = users[idx]
        for m in range(per):
            t0 = time.monotonic()
            try:
                await c.send_message(u, room_id, f"{ctx.tag} {idx} {m}")
            except Exception:
                failures += 1
                continue
            latencies.append(time.monotonic() - t0)

    ctx.log(f"send: {senders} x {per} messages")
    ctx.mark("measure_start")
    t0 = time.monotonic()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    wall = time.monotonic() - t0
    ctx.mark("measure_end")
    measured = ctx.measured()
    sent = len(latencies)
    out: dict[str, Any] = {
        "messages": sent,
        "failures": failures,
        "wall_s": round(wall, 3),
        "msg_per_s": rate(sent, wall),
        **summarize_ms(latencies, prefix="send_"),
        "server_cpu_ms_per_msg": round(measured["server_cpu_s"] * 1000 / sent, 3)
        if sent and "server_cpu_s" in measured
        else None,
        "db_cpu_ms_per_msg": round(measured["db_cpu_s"] * 1000 / sent, 3)
        if sent and "db_cpu_s" in measured
        else None,
        "server_db_cpu_ms_per_msg": round((measured["server_cpu_s"] + measured["db_cpu_s"]) * 1000 / sent, 3)
        if sent and "db_cpu_s" in measured and "server_cpu_s" in measured
        else None,
        "machine_cpu_ms_per_msg": round(measured["machine_busy_cpu_s"] * 1000 / sent, 3)
        if sent and "machine_busy_cpu_s" in measured
        else None,
        "client_cpu_ms_per_msg": round(measured["client_cpu_s"] * 1000 / sent, 3)
        if sent and "client_cpu_s" in measured
        else None,
    }
    return out


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['messages']} messages in {r['wall_s']} s: {fmt_num(r['msg_per_s'], 'msg/s')}"
        f" ({r['failures']} failed)",
        f"send latency p50 {fmt_ms(r['send_p50_ms'])}, p95 {fmt_ms(r['send_p95_ms'])}, "
        f"p99 {fmt_ms(r['send_p99_ms'])}, max {fmt_ms(r['send_max_ms'])}",
        f"server CPU {fmt_num(r['server_cpu_ms_per_msg'], 'ms/msg')}, "
        f"whole machine {fmt_num(r['machine_cpu_ms_per_msg'], 'ms/msg')}"
        + (
            f", database backends {fmt_num(r['db_cpu_ms_per_msg'], 'ms/msg')}"
            if r.get("db_cpu_ms_per_msg") is not None
            else ""
        ),
    ]


SCENARIO = Scenario(
    name="send",
    help="S concurrent senders, M messages each, one room",
    params=[
        Param("senders", int, 10, 4, "concurrent senders (users)"),
        Param("messages", int, 60, 15, "messages per sender"),
        Param("warmup", int, 1, 1, "unmeasured messages per sender first"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("msg_per_s", "send: messages/s", "higher"),
        ("send_p50_ms", "send: latency p50 ms", "lower"),
        ("send_p99_ms", "send: latency p99 ms", "lower"),
        ("server_cpu_ms_per_msg", "send: server CPU ms/msg", "lower"),
    ],
)
