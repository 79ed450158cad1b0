"""ws_idle: N idle WebSocket sync connections (one per user) held open; server RSS and CPU meanwhile.

The WebSocket twin of `idle` (N idle /sync long-polls), measured the same way: the server's RSS
before the users exist and while it holds the N connections, divided by N (so it includes each
user's session state, as `idle` does), and its CPU while they idle. Each connection authenticates
with its token in the upgrade and receives its initial sync frame before the hold starts; every
one must still be open at the end (`errors` 0). Our server only.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from appservices.websocket_sync import WebSocketSync
from bench.client import User
from bench.scenarios.base import Context, Param, Scenario, bounded_gather, sync_filter
from bench.stats import fmt_num


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n: int = p["connections"]
    ctx.log(f"ws_idle: registering {n} users")
    t0 = time.monotonic()
    users = await c.register_many(f"b{ctx.tag}wi", n, concurrency=p["setup_concurrency"])
    reg_s = time.monotonic() - t0
    flt = sync_filter(timeline_limit=10, lazy_members=True)
    errors = 0
    err_samples: list[str] = []

    async def open_one(u: User) -> WebSocketSync | None:
        nonlocal errors
        conn = WebSocketSync(
            c.base_url, u.access_token, filter=flt, set_presence="offline", session=c.session
        )
        try:
            await conn.connect()
            await conn.next_sync(120)
        except Exception as exc:
            errors += 1
            if len(err_samples) < 5:
                err_samples.append(f"{type(exc).__name__}: {exc}"[:200])
            return None
        return conn

    ctx.log(f"ws_idle: opening {n} WebSockets")
    t_open = time.monotonic()
    conns = [x for x in await bounded_gather(users, open_one, p["open_concurrency"]) if x is not None]
    open_s = time.monotonic() - t_open
    await asyncio.sleep(p["settle_min_s"])
    ctx.mark("measure_start")
    await asyncio.sleep(p["hold_s"])
    ctx.mark("measure_end")
    still_open = sum(1 for conn in conns if conn.closed is None)
    errors += len(conns) - still_open
    await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    before = ctx.monitor.marks.get("before")
    during = ctx.monitor.marks.get("measure_end")
    m = ctx.measured()
    rss_delta = (during.rss - before.rss) if before and during else None
    return {
        "connections": n,
        "open": still_open,
        "errors": errors,
        "error_samples": err_samples,
        "hold_s": p["hold_s"],
        "registration_s": round(reg_s, 1),
        "open_s": round(open_s, 1),
        "rss_before_mib": round(before.rss / 1048576, 1) if before else None,
        "rss_during_mib": round(during.rss / 1048576, 1) if during else None,
        "rss_per_connection_kib": round(rss_delta / 1024 / still_open, 2)
        if rss_delta and still_open
        else None,
        "server_cpu_util_during": m.get("server_cpu_util"),
        "server_cpu_s_during": m.get("server_cpu_s"),
        "client_cpu_s_during": m.get("client_cpu_s"),
        "server_fds_during": during.fds if during else None,
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['connections']} idle WebSockets held {r['hold_s']} s: {r['open']} open at the end, "
        f"{r['errors']} errors (opened in {r['open_s']} s)",
        f"server RSS {r['rss_before_mib']} MiB before users -> {r['rss_during_mib']} MiB while holding "
        f"({fmt_num(r['rss_per_connection_kib'], 'KiB')} per connection incl. user/session state), "
        f"fds {r['server_fds_during']}",
        f"server CPU while holding {r['server_cpu_s_during']} s; client CPU {r['client_cpu_s_during']} s",
    ]


SCENARIO = Scenario(
    name="ws_idle",
    help="N idle WebSocket sync connections; server RSS and CPU while they idle (our server only)",
    params=[
        Param("connections", int, 10_000, 200, "concurrent WebSockets (one user each)"),
        Param("hold_s", float, 30.0, 10.0, "measured holding time"),
        Param("settle_min_s", float, 2.0, 1.0, "pause after opening before measuring"),
        Param("open_concurrency", int, 64, 32, "connections being opened at once"),
        Param("setup_concurrency", int, 16, 8, "concurrent registrations"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("rss_during_mib", "ws_idle: server RSS while holding MiB", "lower"),
        ("rss_per_connection_kib", "ws_idle: RSS per connection KiB", "lower"),
        ("server_cpu_util_during", "ws_idle: server CPU share while holding", "lower"),
        ("errors", "ws_idle: errors", "zero"),
    ],
)
