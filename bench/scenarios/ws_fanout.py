"""ws_fanout: the fanout scenario with receivers on WebSocket sync (docs/websocket.md) instead of
long-polling /sync; our server only (Synapse has no WebSocket sync).

R receivers hold one WebSocket each (the reference client, appservices/websocket_sync.py) in one
room while S senders send M messages each over HTTP. Delivery delay = time from the start of the
PUT /send of a message until the sync frame that carries it reaches a receiver. Every receiver must
see every message exactly once (`missing`, `duplicates` 0); a `limited` timeline is filled by
paging /messages over the same socket, as in `fanout`. Run `fanout` with the same parameters for
the long-poll side of the comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from appservices.websocket_sync import UNSTABLE_PATH, ConnectionClosed, WebSocketSync
from bench.client import Deadline, User, timeline_events
from bench.scenarios.base import Context, Param, Scenario, bounded_gather, sync_filter
from bench.stats import fmt_ms, fmt_num, rate, summarize_ms

TIMELINE_LIMIT = 100
MAX_GAP_PAGES = 50


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    assert c.session is not None
    n_recv: int = p["receivers"]
    n_send: int = p["senders"]
    per: int = p["messages"]
    interval = p["interval_ms"] / 1000
    total = n_send * per
    prefix = f"wsfan{ctx.tag}:"

    ctx.log(f"ws_fanout: registering {n_recv} receivers and {n_send} senders")
    senders = await c.register_many(f"b{ctx.tag}ws", n_send)
    receivers = await c.register_many(f"b{ctx.tag}wr", n_recv)
    room_id = await c.create_room(senders[0], name=f"ws fanout {ctx.tag}")
    await bounded_gather([*senders[1:], *receivers], lambda u: c.join(u, room_id), 8)
    flt = sync_filter(timeline_limit=TIMELINE_LIMIT, lazy_members=True, rooms=[room_id], quiet=True)

    def connection(u: User) -> WebSocketSync:
        return WebSocketSync(
            c.base_url,
            u.access_token,
            filter=flt,
            set_presence="offline",
            session=c.session,
            path=UNSTABLE_PATH,
        )

    async def open_one(u: User) -> WebSocketSync:
        conn = connection(u)
        await conn.connect()
        await conn.next_sync(60)  # the initial sync
        return conn

    ctx.log("ws_fanout: connecting and initial syncs")
    conns: list[WebSocketSync] = await bounded_gather(receivers, open_one, 16)

    send_start: dict[str, float] = {}
    send_lat: list[float] = []
    send_failures = 0
    delays: list[float] = []
    arrivals: list[float] = []
    dup = 0
    out_of_order = 0
    limited = 0
    gap_pages = 0
    frames = 0
    closes = 0
    all_sent = asyncio.Event()
    drain = Deadline(p["drain_s"] + total * 2)

    async def receiver(idx: int) -> int:
        nonlocal dup, out_of_order, limited, gap_pages, frames, closes
        conn = conns[idx]
        seen: set[str] = set()
        last_seq: dict[str, int] = {}

        def take(events: list[dict[str, Any]], now: float) -> bool:
            nonlocal dup, out_of_order
            hit_seen = False
            for ev in events:
                text = (ev.get("content") or {}).get("body")
                if (
                    ev.get("type") != "m.room.message"
                    or not isinstance(text, str)
                    or not text.startswith(prefix)
                ):
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
                page = await conn.messages(room_id, token, limit=TIMELINE_LIMIT)
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
            gap.reverse()
            take(gap, time.monotonic())

        while len(seen) < total and not (all_sent.is_set() and drain.expired()):
            wait = 30.0 if not all_sent.is_set() else max(0.1, drain.left())
            try:
                body = await conn.next_sync(wait)
            except TimeoutError:
                continue
            except ConnectionClosed:
                closes += 1
                await conn.connect()
                continue
            now = time.monotonic()
            frames += 1
            timeline = ((body.get("rooms") or {}).get("join") or {}).get(room_id, {}).get("timeline") or {}
            if timeline.get("limited") and seen:
                limited += 1
                await fill_gap(timeline.get("prev_batch"))
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

    ctx.log(f"ws_fanout: {n_recv} receivers on WebSockets, {n_send} x {per} messages")
    recv_tasks = [asyncio.ensure_future(receiver(i)) for i in range(n_recv)]
    await asyncio.sleep(p["settle_ms"] / 1000)
    ctx.mark("measure_start")
    t_start = time.monotonic()
    await asyncio.gather(*(sender(i) for i in range(n_send)))
    t_sent = time.monotonic()
    drain.end = t_sent + p["drain_s"]
    all_sent.set()
    done, pending = await asyncio.wait(recv_tasks, timeout=p["drain_s"] + 5)
    for t in pending:
        t.cancel()
    for t in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    ctx.mark("measure_end")
    await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    counts = [t.result() for t in done if not t.cancelled() and t.exception() is None]
    delivered = sum(counts)
    expected = n_recv * (total - send_failures)
    last = max(arrivals) if arrivals else t_start
    m = ctx.measured()
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
        "frames": frames,
        "closes": closes,
        "receivers_unfinished": len(pending),
        "send_failures": send_failures,
        "send_wall_s": round(t_sent - t_start, 3),
        "msg_per_s": rate(total - send_failures, t_sent - t_start),
        "delivered_per_s": rate(delivered, last - t_start),
        "server_cpu_s": m.get("server_cpu_s"),
        "server_cpu_ms_per_delivery": round(m["server_cpu_s"] * 1000 / delivered, 3)
        if m.get("server_cpu_s") and delivered
        else None,
        **summarize_ms(delays, prefix="delay_"),
        **summarize_ms(send_lat, prefix="send_"),
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['messages']} messages to {r['receivers']} WebSocket receivers: delivered {r['delivered']}/"
        f"{r['expected_deliveries']}, missing {r['missing']}, duplicates {r['duplicates']}, "
        f"out of order {r['out_of_order']}, limited {r['limited_responses']} "
        f"(gap-fill pages {r['gap_fill_pages']}), {r['frames']} frames, {r['closes']} closes",
        f"delivery delay p50 {fmt_ms(r['delay_p50_ms'])}, p95 {fmt_ms(r['delay_p95_ms'])}, "
        f"p99 {fmt_ms(r['delay_p99_ms'])}, max {fmt_ms(r['delay_max_ms'])}",
        f"{fmt_num(r['delivered_per_s'], 'deliveries/s')}, senders {fmt_num(r['msg_per_s'], 'msg/s')}, "
        f"server CPU {r['server_cpu_ms_per_delivery']} ms per delivery",
    ]


SCENARIO = Scenario(
    name="ws_fanout",
    help="fanout with receivers on WebSocket sync instead of long-polls (our server only)",
    params=[
        Param("receivers", int, 50, 10, "receivers, one WebSocket each"),
        Param("senders", int, 4, 2, "concurrent senders"),
        Param("messages", int, 30, 10, "messages per sender"),
        Param("interval_ms", int, 0, 0, "pause between one sender's messages"),
        Param("settle_ms", int, 500, 300, "pause after connecting before sending"),
        Param("drain_s", float, 30.0, 15.0, "how long receivers may take after the last send"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("delay_p50_ms", "ws_fanout: delay p50 ms", "lower"),
        ("delay_p99_ms", "ws_fanout: delay p99 ms", "lower"),
        ("delivered_per_s", "ws_fanout: deliveries/s", "higher"),
        ("missing", "ws_fanout: missing", "zero"),
        ("duplicates", "ws_fanout: duplicates", "zero"),
    ],
)
