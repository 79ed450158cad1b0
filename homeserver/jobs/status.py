"""Synapse's GET /_synapse/admin/v1/background_updates/status, answered from our jobs.

Synapse's background updates are long database tasks run in batches; ours are the jobs (room
deletion, purges, broadcasts). Synapse shows one update per database (`master`); we show the oldest
job in progress, with the items its batches have processed so far.
"""

from __future__ import annotations

from typing import Any

from homeserver.jobs.runner import JobRunner
from homeserver.storage.stores.jobs import ACTIVE, Job

# Progress keys that count processed items, per job kind.
ITEM_KEYS = ("events_deleted", "deleted", "sent", "items")


def items_done(job: Job) -> int:
    return sum(int(job.progress.get(key, 0) or 0) for key in ITEM_KEYS)


async def background_updates_status(runner: JobRunner, now_ms: int) -> dict[str, Any]:
    active = await runner.store.list_jobs(statuses=(ACTIVE,))
    current: dict[str, Any] = {}
    if active:
        job = active[0]
        items = items_done(job)
        duration = float(max(1, now_ms - job.created_ts))
        current["master"] = {
            "name": f"{job.kind}:{job.job_id}",
            "total_item_count": items,
            "total_duration_ms": duration,
            "average_items_per_ms": items / duration,
        }
    return {"enabled": runner.enabled, "current_updates": current}
