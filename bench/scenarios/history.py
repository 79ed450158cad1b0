"""history: /messages paging backwards through a room holding N messages.

Setup sends the messages (several senders at once). Each pass pages from the end of the room
(`from` omitted, as the spec allows since v1.3) back to its creation with `dir=b`, and checks that
every message was returned exactly once. Figures: events/s over the pass and per-page latency.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.scenarios.base import Context, Param, Scenario
from bench.stats import fmt_ms, fmt_num, rate, summarize_ms


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n: int = p["events"]
    n_send: int = max(1, p["setup_senders"])
    ctx.log(f"history: sending {n} messages with {n_send} senders")
    users = await c.register_many(f"b{ctx.tag}h", n_send)
    room_id = await c.create_room(users[0], name=f"history {ctx.tag}")
    for u in users[1:]:
        await c.join(u, room_id)
    prefix = f"hist{ctx.tag}:"
    t_setup = time.monotonic()

    async def sender(idx: int) -> None:
        for m in range(idx, n, n_send):
            await c.send_message(users[idx], room_id, f"{prefix}{m}")
            if m and m % 1000 == 0:
                ctx.log(f"  {m}/{n} sent")

    await asyncio.gather(*(sender(i) for i in range(n_send)))
    setup_rate = rate(n, time.monotonic() - t_setup)
    flt = json.dumps({"lazy_load_members": True}, separators=(",", ":")) if p["lazy"] else None

    ctx.mark("measure_start")
    passes: list[dict[str, Any]] = []
    max_pages = (n // max(p["page"], 1)) * 2 + 100
    for _ in range(p["passes"]):
        lat: list[float] = []
        seen: set[int] = set()
        dup = 0
        events = 0
        token: str | None = None
        t0 = time.monotonic()
        for _page in range(max_pages):
            t = time.monotonic()
            body = await c.messages(
                users[0], room_id, from_=token, direction="b", limit=p["page"], filter_=flt
            )
            lat.append(time.monotonic() - t)
            chunk = body.get("chunk") or []
            events += len(chunk)
            for ev in chunk:
                text = (ev.get("content") or {}).get("body")
                if isinstance(text, str) and text.startswith(prefix):
                    k = int(text[len(prefix) :])
                    if k in seen:
                        dup += 1
                    seen.add(k)
            token = body.get("end")
            if not chunk or not token:
                break
        wall = time.monotonic() - t0
        passes.append(
            {
                "wall_s": round(wall, 3),
                "pages": len(lat),
                "events": events,
                "events_per_s": rate(events, wall),
                "messages_found": len(seen),
                "missing": n - len(seen),
                "duplicates": dup,
                **summarize_ms(lat, prefix="page_"),
            }
        )
    ctx.mark("measure_end")
    first = passes[0]
    best = max(passes, key=lambda x: x["events_per_s"] or 0)
    return {
        "messages": n,
        "page": p["page"],
        "setup_msg_per_s": setup_rate,
        "events_per_s": first["events_per_s"],
        "best_events_per_s": best["events_per_s"],
        "page_p50_ms": first["page_p50_ms"],
        "page_p99_ms": first["page_p99_ms"],
        "missing": first["missing"],
        "duplicates": first["duplicates"],
        "passes": passes,
    }


def summary(r: dict[str, Any]) -> list[str]:
    out = [
        f"{r['messages']} messages (setup at {fmt_num(r['setup_msg_per_s'], 'msg/s')}), pages of {r['page']}"
    ]
    for i, ps in enumerate(r["passes"], 1):
        out.append(
            f"pass {i}: {ps['events']} events in {ps['wall_s']} s = {fmt_num(ps['events_per_s'], 'ev/s')}; "
            f"page p50 {fmt_ms(ps['page_p50_ms'])}, p99 {fmt_ms(ps['page_p99_ms'])}; "
            f"missing {ps['missing']}, duplicates {ps['duplicates']}"
        )
    return out


SCENARIO = Scenario(
    name="history",
    help="/messages paging backwards through N events",
    params=[
        Param("events", int, 10_000, 500, "messages in the room"),
        Param("page", int, 100, 50, "limit per /messages request"),
        Param("passes", int, 2, 2, "full passes through the history"),
        Param("setup_senders", int, 8, 4, "concurrent senders while filling the room"),
        Param("lazy", int, 0, 0, "1 = /messages with a lazy-loading filter"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("events_per_s", "history: /messages events/s", "higher"),
        ("page_p50_ms", "history: page p50 ms", "lower"),
        ("missing", "history: missing", "zero"),
    ],
)
