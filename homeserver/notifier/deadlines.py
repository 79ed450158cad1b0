"""Timeouts of parked long-polls: one loop timer for all of them (a timer wheel).

A loop timer per parked request is an object, a copied context and a heap entry for each of
thousands of held polls (~650 bytes each, measured), all cancelled again when the poll is woken
first, as most are. Here a deadline is a set entry in the bucket of its `TICK_S` slot; one timer
fires at the earliest slot and resolves that bucket's futures with -1. Deadlines are rounded up
to the next slot: a long-poll ends at most `TICK_S` after its timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import math

TICK_S = 0.1
EXPIRED = -1.0


class Deadlines:
    def __init__(self) -> None:
        self._buckets: dict[int, set[asyncio.Future[float]]] = {}
        self._slots: list[int] = []  # heap of the buckets' slots
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0

    def add(self, fut: asyncio.Future[float], timeout_s: float) -> int:
        """Resolve `fut` with `EXPIRED` once `timeout_s` passed; returns the slot for `discard`."""
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + timeout_s) / TICK_S)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = set()
            heapq.heappush(self._slots, slot)
            if self._timer is None or slot < self._timer_slot:
                self._arm(loop, slot)
        bucket.add(fut)
        return slot

    def discard(self, slot: int, fut: asyncio.Future[float]) -> None:
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket.discard(fut)
            if not bucket:
                del self._buckets[slot]  # its heap entry goes when the timer passes it

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def _arm(self, loop: asyncio.AbstractEventLoop, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = loop.call_at(slot * TICK_S, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        slots = self._slots
        while slots and slots[0] * TICK_S <= now + TICK_S / 100:  # a timer may fire a hair early
            bucket = self._buckets.pop(heapq.heappop(slots), None)
            for fut in bucket or ():
                if not fut.done():
                    fut.set_result(EXPIRED)
        while slots and slots[0] not in self._buckets:  # emptied by discard: nothing to wake
            heapq.heappop(slots)
        if slots:
            self._arm(loop, slots[0])
