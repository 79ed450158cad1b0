"""When the cyclic garbage collector runs in a server process (docs/performance.md, "Round two,
second pass").

CPython starts a full (generation 2) collection whenever the objects promoted out of the young
generations since the last one exceed a quarter of the old generation, and a full collection
traverses every tracked object: the caches and every held request. A server holding 10,000
long-polls promotes each of them (they live for seconds), so at 20 messages/s it ran a full
collection every few seconds, each over millions of objects (1-7 s of wall time on a busy machine),
and the young collections ran 40 times a second — measured at more than half of the server's CPU,
with no cyclic garbage found at all. Reference counting frees nearly everything here; the cyclic
collector is a safety net.

The policy, applied by `homeserver run` (not by tests, which build many servers in one process):

- objects that exist once start-up is done (modules, classes, functions, configuration) go to the
  permanent generation (`gc.freeze`) and are never traversed again;
- young collections after `YOUNG_THRESHOLD` net allocations instead of 700, so short-lived
  request objects are freed by reference counting before a collection ever sees them;
- no automatic full collection: a timer runs one every `FULL_INTERVAL_S` (Synapse also drives full
  collections itself, with a minimum interval). Cyclic garbage that reached the old generation
  lives at most that long.
"""

from __future__ import annotations

import asyncio
import gc
import logging

logger = logging.getLogger(__name__)

YOUNG_THRESHOLD = 20_000
# Generation 2's threshold counts generation-1 collections; this many never happen in practice.
NO_AUTOMATIC_FULL = 1_000_000_000
FULL_INTERVAL_S = 60.0


class GcPolicy:
    def __init__(
        self, full_interval_s: float = FULL_INTERVAL_S, young_threshold: int = YOUNG_THRESHOLD
    ) -> None:
        self.full_interval_s = full_interval_s
        self.young_threshold = young_threshold
        self.full_collections = 0
        self._previous: tuple[int, int, int] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Call once the process has started (after the services are built)."""
        if self._previous is not None:
            return
        self._previous = gc.get_threshold()
        gc.collect()  # start-up garbage first, so only live objects are frozen
        gc.freeze()
        gc.set_threshold(self.young_threshold, self._previous[1], NO_AUTOMATIC_FULL)
        logger.info(
            "garbage collector: %d start-up objects frozen; young collections every %d allocations; "
            "a full collection every %.0f s",
            gc.get_freeze_count(),
            self.young_threshold,
            self.full_interval_s,
        )
        self._schedule()

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.full_interval_s, self._full)

    def _full(self) -> None:
        gc.collect(2)
        self.full_collections += 1
        self._schedule()

    def stop(self) -> None:
        """Back to CPython's defaults (the thresholds found at start, nothing frozen)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._previous is not None:
            gc.set_threshold(*self._previous)
            gc.unfreeze()
            self._previous = None
