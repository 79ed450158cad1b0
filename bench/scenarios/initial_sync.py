"""initial_sync: a user in X rooms with Y messages each; full initial /sync and a filtered one
(timeline.limit 10, lazy-loaded members), each repeated (the first run is reported separately).

Every sync comes from a freshly logged-in device (login not timed), as a new client would do it;
the server CPU of the measured phase includes those logins. `first` is the coldest figure."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from bench.scenarios.base import Context, Param, Scenario, build_rooms, sync_filter
from bench.stats import fmt_ms


def _shape(body: dict[str, Any]) -> dict[str, int]:
    joined = ((body.get("rooms") or {}).get("join")) or {}
    timeline = sum(len((r.get("timeline") or {}).get("events") or []) for r in joined.values())
    state = sum(len((r.get("state") or {}).get("events") or []) for r in joined.values())
    return {"rooms": len(joined), "timeline_events": timeline, "state_events": state}


async def run(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    c = ctx.client
    ctx.log(
        f"initial_sync: building {p['rooms']} rooms x {p['messages']} messages ({p['members']} members each)"
    )
    owner = (await c.register_many(f"b{ctx.tag}io", 1))[0]
    helpers = await c.register_many(f"b{ctx.tag}ih", max(p["members"], 1))
    await build_rooms(
        ctx,
        owner,
        helpers,
        rooms=p["rooms"],
        members=p["members"],
        messages=p["messages"],
        concurrency=p["setup_concurrency"],
    )
    filtered = json.dumps(sync_filter(timeline_limit=10, lazy_members=True), separators=(",", ":"))
    results: dict[str, Any] = {"rooms": p["rooms"], "messages_per_room": p["messages"]}
    ctx.mark("measure_start")
    for name, flt in (("full", None), ("filtered", filtered)):
        times: list[float] = []
        shape: dict[str, int] = {}
        for _ in range(p["repeat"]):
            # A new device each time, as after a fresh login: no server response cache can answer
            # (Synapse keeps identical sync responses for 2 minutes, keyed by user, device, filter).
            device = await c.login(owner)
            t0 = time.monotonic()
            body = await c.sync(device, filter_=flt, http_timeout=600)
            times.append(time.monotonic() - t0)
            shape = _shape(body)
        results[f"{name}_first_ms"] = round(times[0] * 1000, 1)
        results[f"{name}_median_ms"] = round(statistics.median(times) * 1000, 1)
        results[f"{name}_min_ms"] = round(min(times) * 1000, 1)
        results[f"{name}_shape"] = shape
    ctx.mark("measure_end")
    return results


def summary(r: dict[str, Any]) -> list[str]:
    out = []
    for name in ("full", "filtered"):
        s = r[f"{name}_shape"]
        out.append(
            f"{name} initial sync, {r['rooms']} rooms x {r['messages_per_room']} msgs: first "
            f"{fmt_ms(r[f'{name}_first_ms'])}, median {fmt_ms(r[f'{name}_median_ms'])}, min "
            f"{fmt_ms(r[f'{name}_min_ms'])} ({s.get('rooms')} rooms, {s.get('timeline_events')} timeline, "
            f"{s.get('state_events')} state events)"
        )
    return out


SCENARIO = Scenario(
    name="initial_sync",
    help="full and filtered initial /sync for a user in X rooms with Y messages",
    params=[
        Param("rooms", int, 100, 10, "rooms the user is in (X)"),
        Param("messages", int, 20, 5, "messages per room (Y)"),
        Param("members", int, 2, 1, "other members per room"),
        Param("repeat", int, 5, 3, "syncs of each kind"),
        Param("setup_concurrency", int, 8, 8, "concurrent room builders during setup"),
    ],
    run=run,
    summary=summary,
    headline=[
        ("full_first_ms", "initial sync: full, first ms", "lower"),
        ("full_median_ms", "initial sync: full, median ms", "lower"),
        ("filtered_median_ms", "initial sync: filtered, median ms", "lower"),
    ],
)
