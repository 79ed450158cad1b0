"""fanout: R receivers long-poll /sync in one room while S senders send M messages each.

Delivery delay = time from the start of the PUT /send of a message until the /sync response that
carries it reaches a receiver. Every receiver must see every message exactly once: `missing` and
`duplicates` must be 0. The receivers' filter keeps only this room's timeline (lazy members, no
presence/account data/ephemeral) with timeline limit 100 (the usual server cap). A receiver that gets
a `limited` timeline fills the gap as a client would, paging /messages back from `prev_batch` until it
meets a message it already has; those events count as delivered when that paging returns
(`limited_responses` and `gap_fill_pages` say how often).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from bench.client import Deadline, User, timeline_events
from bench.scenarios.base import Context, Param, Scenario, bounded_gather, sync_filter
from bench.stats import fmt_ms, fmt_num, rate, summarize_ms

LONG_POLL_MS = 30_000
TIMELINE_LIMIT = 100
MAX_GAP_PAGES = 50


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n_recv: int = p["receivers"]
    n_send: int = p["senders"]
    per: int = p["messages"]
    interval = p["interval_ms"] / 1000
    total = n_send * per
    prefix = f"fan{ctx.tag}:"

    ctx.log(f"fanout: registering {n_recv} receivers and {n_send} senders")
    senders = await c.register_many(f"b{ctx.tag}fs", n_send)
    receivers = await c.register_many(f"b{ctx.tag}fr", n_recv)
    room_id = await c.create_room(senders[0], name=f"fanout {ctx.tag}")
    await bounded_gather([*senders[1:], *receivers], lambda u: c.join(u, room_id), 8)
    flt = json.dumps(
        sync_filter(timeline_limit=TIMELINE_LIMIT, lazy_members=True, rooms=[room_id], quiet=True),
        separators=(",", ":"),
    )

    async def first_sync(u: User) -> str:
        body = await c.sync(u, filter_=flt)
        return str(body["next_batch"])

    ctx.log("fanout: initial syncs")
    tokens: list[str] = await bounded_gather(receivers, first_sync, 16)

    send_start: dict[str, float] = {}
    send_lat: list[float] = []
    send_failures = 0
    delays: list[float] = []
    arrivals: list[float] = []
    dup = 0
    out_of_order = 0
    limited = 0
    gap_pages = 0
    sync_requests = 0
    sync_errors = 0
    all_sent = asyncio.Event()
    drain = Deadline(p["drain_s"] + total * 2)  # re-armed when sending ends

    async def receiver(idx: int) -> int:
        nonlocal dup, out_of_order, limited, gap_pages, sync_requests, sync_errors
        u = receivers[idx]
        since = tokens[idx]
        seen: set[str] = set()
        last_seq: dict[str, int] = {}

        def take(events: list[dict[str, Any]], now: float) -> bool:
            """Record our messages (in timeline order); True if one was already seen."""
            nonlocal dup, out_of_order
            hit_seen = False
            for ev in events:
                text = (ev.get("content") or {}).get("body")
                if ev.get("type") != "m.room.message" or not isinstance(text, str):
                    continue
                if not text.startswith(prefix):
                    continue
                key = text[len(prefix) :]
                if key in seen:
                    hit_seen = True
                    continue
                seen.add(key)
                started = send_start.get(key)
                if started is not None:
                    delays.append(now - started)
                    arrivals.append(now)
                sender_idx, _, seq = key.partition("/")
                s = int(seq)
                if s < last_seq.get(sender_idx, -1):
                    out_of_order += 1
                last_seq[sender_idx] = s
            return hit_seen

        async def fill_gap(prev_batch: str | None) -> None:
            nonlocal gap_pages
            token = prev_batch
            gap: list[dict[str, Any]] = []
            for _ in range(MAX_GAP_PAGES):
                if not token:
                    break
                page = await c.messages(u, room_id, from_=token, direction="b", limit=TIMELINE_LIMIT)
                gap_pages += 1
                chunk = page.get("chunk") or []
                gap.extend(chunk)
                token = page.get("end")
                if not chunk or any(
                    isinstance((ev.get("content") or {}).get("body"), str)
                    and ev["content"]["body"].startswith(prefix)
                    and ev["content"]["body"][len(prefix) :] in seen
                    for ev in chunk
                ):
                    break
            gap.reverse()  # oldest first, as a timeline
            take(gap, time.monotonic())

        max_polls = total * 4 + 100
        for _ in range(max_polls):
            if len(seen) >= total or (all_sent.is_set() and drain.expired()):
                break
            poll_ms = LONG_POLL_MS if not all_sent.is_set() else max(100, int(drain.left() * 1000))
            try:
                sync_requests += 1
                body = await c.sync(u, since=since, timeout_ms=min(poll_ms, LONG_POLL_MS), filter_=flt)
            except Exception:
                sync_errors += 1
                await asyncio.sleep(0.2)
                continue
            now = time.monotonic()
            since = str(body["next_batch"])
            room = (((body.get("rooms") or {}).get("join") or {}).get(room_id)) or {}
            timeline = room.get("timeline") or {}
            if timeline.get("limited") and seen:
                limited += 1
                try:
                    await fill_gap(timeline.get("prev_batch"))
                except Exception:
                    sync_errors += 1
            take(timeline_events(body, room_id), now)
        return len(seen)

    async def sender(idx: int) -> None:
        nonlocal send_failures
        u = senders[idx]
        for m in range(per):
            key = f"{idx}/{m}"
            t0 = time.monotonic()
            send_start[key] = t0
            try:
                await c.send_message(u, room_id, prefix + key)
            except Exception:
                send_failures += 1
                continue
            send_lat.append(time.monotonic() - t0)
            if interval:
                await asyncio.sleep(interval)

    ctx.log(f"fanout: {n_recv} receivers long-polling, {n_send} x {per} messages")
    recv_tasks = [asyncio.ensure_future(receiver(i)) for i in range(n_recv)]
    await asyncio.sleep(p["settle_ms"] / 1000)  # let the long-polls park on the server
    ctx.mark("measure_start")
    t_start = time.monotonic()
    await asyncio.gather(*(sender(i) for i in range(n_send)))
    t_sent = time.monotonic()
    drain.end = t_sent + p["drain_s"]
    all_sent.set()
    done, pending = await asyncio.wait(recv_tasks, timeout=p["drain_s"] + LONG_POLL_MS / 1000 + 5)
    for t in pending:
        t.cancel()
    for t in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    ctx.mark("measure_end")
    counts = [t.result() for t in done if not t.cancelled() and t.exception() is None]
    delivered = sum(counts)
    expected = n_recv * (total - send_failures)
    last = max(arrivals) if arrivals else t_start
    return {
        "receivers": n_recv,
        "messages": total - send_failures,
        "expected_deliveries": expected,
        "delivered": delivered,
        "missing": expected - delivered,
        "duplicates": dup,
        "out_of_order": out_of_order,
        "limited_responses": limited,
        "gap_fill_pages": gap_pages,
        "receivers_unfinished": len(pending),
        "sync_requests": sync_requests,
        "sync_errors": sync_errors,
        "send_failures": send_failures,
        "send_wall_s": round(t_sent - t_start, 3),
        "msg_per_s": rate(total - send_failures, t_sent - t_start),
        "delivered_per_s": rate(delivered, last - t_start),
        **summarize_ms(delays, prefix="delay_"),
        **summarize_ms(send_lat, prefix="send_"),
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['messages']} messages to {r['receivers']} receivers: delivered {r['delivered']}/"
        f"{r['expected_deliveries']}, missing {r['missing']}, duplicates {r['duplicates']}, "
        f"out of order {r['out_of_order']}, limited {r['limited_responses']} "
        f"(gap-fill pages {r['gap_fill_pages']})",
        f"delivery delay p50 {fmt_ms(r['delay_p50_ms'])}, p95 {fmt_ms(r['delay_p95_ms'])}, "
        f"p99 {fmt_ms(r['delay_p99_ms'])}, max {fmt_ms(r['delay_max_ms'])}",
        f"{fmt_num(r['delivered_per_s'], 'deliveries/s')}, senders {fmt_num(r['msg_per_s'], 'msg/s')}, "
        f"send p50 {fmt_ms(r['send_p50_ms'])}; {r['sync_requests']} syncs, {r['sync_errors']} sync errors",
    ]


SCENARIO = Scenario(
    name="fanout",
    help="R receivers long-polling /sync in one room while senders send; delivery delay",
    params=[
        Param("receivers", int, 50, 10, "receivers long-polling /sync"),
        Param("senders", int, 4, 2, "concurrent senders"),
        Param("messages", int, 30, 10, "messages per sender"),
        Param("interval_ms", int, 0, 0, "pause between one sender's messages"),
        Param("settle_ms", int, 500, 300, "pause after starting the long-polls before sending"),
        Param("drain_s", float, 30.0, 15.0, "how long receivers may take after the last send"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("delay_p50_ms", "fanout: delay p50 ms", "lower"),
        ("delay_p99_ms", "fanout: delay p99 ms", "lower"),
        ("delivered_per_s", "fanout: deliveries/s", "higher"),
        ("missing", "fanout: missing", "zero"),
        ("duplicates", "fanout: duplicates", "zero"),
    ],
)
