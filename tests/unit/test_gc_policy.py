"""The server's garbage-collector policy (homeserver/ops/gc_policy.py): start-up objects frozen,
young collections less often, full collections only from the timer; stop puts CPython's settings
back (tests run many servers in one process)."""

from __future__ import annotations

import asyncio
import gc

from homeserver.ops.gc_policy import NO_AUTOMATIC_FULL, GcPolicy


async def test_policy_applies_and_restores() -> None:
    before = gc.get_threshold()
    full: list[int] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    policy = GcPolicy(full_interval_s=0.05, young_threshold=5_000)
    gc.callbacks.append(on_gc)
    try:
        policy.start()
        assert gc.get_threshold() == (5_000, before[1], NO_AUTOMATIC_FULL)
        assert gc.get_freeze_count() > 0
        policy.start()  # a second start changes nothing
        for _ in range(100):  # bounded wait for two timer-driven full collections
            if policy.full_collections >= 2:
                break
            await asyncio.sleep(0.05)
        assert policy.full_collections >= 2
        assert len(full) >= 2
    finally:
        policy.stop()
        gc.callbacks.remove(on_gc)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    runs = policy.full_collections
    await asyncio.sleep(0.15)
    assert policy.full_collections == runs  # the timer is gone
