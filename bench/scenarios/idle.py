"""idle: N concurrent idle /sync long-polls (one per user) held open; server RSS and CPU meanwhile.

Each user first does an initial sync; then the N long-polls are opened in batches, the tool waits
(bounded) until the server holds a socket for each (its fd count grew by N), the server is sampled
over `hold_s` seconds, and every long-poll must then end with a 200 (an empty
incremental sync at its timeout): `errors` must be 0. Long-polls that return before the hold ended
are counted as `early` (the server did not hold them).

The client holds N sockets from one process (fd limit raised, unlimited connector); its own CPU is
reported so a client bottleneck is visible.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.client import Deadline, User
from bench.procstat import sample
from bench.scenarios.base import Context, Param, Scenario, bounded_gather, sync_filter
from bench.stats import fmt_num, summarize_ms


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    n: int = p["polls"]
    ctx.log(f"idle: registering {n} users")
    t0 = time.monotonic()
    users = await c.register_many(f"b{ctx.tag}i", n, concurrency=p["setup_concurrency"])
    reg_s = time.monotonic() - t0
    flt = json.dumps(sync_filter(timeline_limit=10, lazy_members=True), separators=(",", ":"))

    async def first(u: User) -> str:
        return str((await c.sync(u, filter_=flt))["next_batch"])

    ctx.log(f"idle: {n} initial syncs (registration took {reg_s:.1f} s)")
    tokens: list[str] = await bounded_gather(users, first, p["setup_concurrency"])

    hold = p["hold_s"]
    batch = max(1, p["open_batch"])
    opening_s = (n + batch - 1) // batch * p["open_pause_ms"] / 1000
    # Long enough to outlast opening, waiting for the server to accept them all, and the hold.
    timeout_ms = int((opening_s + p["settle_s"] + hold + p["margin_s"]) * 1000)
    ok = 0
    errors = 0
    early = 0
    hold_end = float("inf")
    returned_at: list[float] = []
    err_samples: list[str] = []

    async def poll(i: int) -> None:
        nonlocal ok, errors, early
        started = time.monotonic()
        try:
            await c.sync(
                users[i],
                since=tokens[i],
                timeout_ms=timeout_ms,
                filter_=flt,
                http_timeout=timeout_ms / 1000 + 120,
            )
        except Exception as exc:
            errors += 1
            if len(err_samples) < 5:
                err_samples.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        now = time.monotonic()
        ok += 1
        returned_at.append(now - started)
        if now < hold_end:
            early += 1

    ctx.log(f"idle: opening {n} long-polls (timeout {timeout_ms} ms)")
    ctx.mark("open_start")
    t_open = time.monotonic()
    tasks: list[asyncio.Future[None]] = []
    for i in range(0, n, batch):
        tasks.extend(asyncio.ensure_future(poll(k)) for k in range(i, min(n, i + batch)))
        await asyncio.sleep(p["open_pause_ms"] / 1000)
    # Wait (bounded) until the server holds a socket per poll: its fd count reaches N.
    settle = Deadline(p["settle_s"])
    base_fds = ctx.monitor.marks["before"].fds if "before" in ctx.monitor.marks else 0
    accepted_s = None
    while not settle.expired():
        now_sample = sample(ctx.monitor.pid)
        # (a few keep-alive sockets of the set-up phase may have closed meanwhile: small tolerance)
        if now_sample is None or now_sample.fds - base_fds >= n - min(16, n // 100):
            accepted_s = round(time.monotonic() - t_open, 2) if now_sample is not None else None
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(p["settle_min_s"])
    ctx.mark("measure_start")
    hold_end = time.monotonic() + hold
    await asyncio.sleep(hold)
    ctx.mark("measure_end")
    end_mark = ctx.monitor.marks.get("measure_end")
    open_fds = end_mark.fds if end_mark else None
    ctx.log("idle: waiting for the long-polls to time out")
    _done, pending = await asyncio.wait(tasks, timeout=timeout_ms / 1000 + 150)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    before = ctx.monitor.marks.get("before")
    during = ctx.monitor.marks.get("measure_end")
    m = ctx.measured()
    rss_delta = (during.rss - before.rss) if before and during else None
    # Polls the server really held (sockets it had open beyond those before the scenario).
    held = min(n, max(0, during.fds - before.fds)) if before and during else None
    return {
        "polls": n,
        "hold_s": hold,
        "ok": ok,
        "errors": errors + len(pending),
        "early": early,
        "unfinished": len(pending),
        "error_samples": err_samples,
        "registration_s": round(reg_s, 1),
        "open_s": round(opening_s, 1),
        "all_accepted_after_s": accepted_s,
        "poll_timeout_ms": timeout_ms,
        "rss_during_mib": round(during.rss / 1048576, 1) if during else None,
        "rss_before_mib": round(before.rss / 1048576, 1) if before else None,
        "polls_held_by_server": held,
        "rss_per_poll_kib": round(rss_delta / 1024 / held, 2) if rss_delta is not None and held else None,
        "server_cpu_util_during": m.get("server_cpu_util"),
        "server_cpu_s_during": m.get("server_cpu_s"),
        "client_cpu_s_during": m.get("client_cpu_s"),
        "server_fds_during": open_fds,
        **summarize_ms(returned_at, prefix="held_"),
    }


def summary(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['polls']} idle long-polls held {r['hold_s']} s: {r['ok']} ok, {r['errors']} errors, "
        f"{r['early']} returned early, {r['unfinished']} unfinished; server held "
        f"{r['polls_held_by_server']} sockets (all after {r['all_accepted_after_s']} s)",
        f"server RSS {r['rss_before_mib']} MiB before users -> {r['rss_during_mib']} MiB while holding "
        f"({fmt_num(r['rss_per_poll_kib'], 'KiB')} per poll incl. user/session state), "
        f"fds {r['server_fds_during']}",
        f"server CPU while holding {r['server_cpu_s_during']} s "
        f"({fmt_num((r['server_cpu_util_during'] or 0) * 100, '%')} "
        f"of a core); client CPU {r['client_cpu_s_during']} s; held p50 {r['held_p50_ms']} ms",
    ]


SCENARIO = Scenario(
    name="idle",
    help="N concurrent idle /sync long-polls; server RSS and CPU while they wait",
    params=[
        Param("polls", int, 10_000, 200, "concurrent long-polls (one user each)"),
        Param("hold_s", float, 30.0, 10.0, "measured holding time"),
        Param("margin_s", float, 20.0, 10.0, "long-poll timeout beyond opening, settling and the hold"),
        Param("settle_s", float, 60.0, 20.0, "longest wait for the server to accept every poll (by its fds)"),
        Param("settle_min_s", float, 2.0, 1.0, "pause after that before measuring"),
        Param("open_batch", int, 200, 50, "long-polls opened at once"),
        Param("open_pause_ms", int, 200, 50, "pause between batches"),
        Param("setup_concurrency", int, 16, 8, "concurrent registrations / initial syncs"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("rss_during_mib", "idle: server RSS while holding MiB", "lower"),
        ("rss_per_poll_kib", "idle: RSS per poll KiB", "lower"),
        ("server_cpu_util_during", "idle: server CPU share while holding", "lower"),
        ("errors", "idle: errors", "zero"),
    ],
)
