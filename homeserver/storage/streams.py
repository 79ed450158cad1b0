"""Stream id generation with a safe "current position".

Ids are handed out in order, but transactions may commit out of order (PostgreSQL, or any
concurrent writers). A reader must never see position N before every id below N is persisted, or a
sync could skip an event forever. So the current position only advances over a gap-free prefix of
completed ids.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from homeserver.core.streams import Stream
from homeserver.storage.database import Database

logger = logging.getLogger(__name__)


class StreamIdGenerator:
    def __init__(self, name: Stream, start: int) -> None:
        self.name = name
        self._last_issued = start
        self._current = start
        self._in_flight: set[int] = set()
        self._listeners: list[Callable[[Stream, int], None]] = []
        # (position, tie-breaker, callback): run once the current position reaches `position`.
        self._on_visible: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    @classmethod
    async def load(cls, db: Database, name: Stream, table: str, column: str) -> StreamIdGenerator:
        value = await db.fetchval(f"SELECT COALESCE(MAX({column}), 0) FROM {table}")
        return cls(name, int(value or 0))

    def add_listener(self, fn: Callable[[Stream, int], None]) -> None:
        """Called with (stream name, new current position) whenever it advances."""
        self._listeners.append(fn)

    @property
    def current(self) -> int:
        return self._current

    def when_visible(self, position: int, fn: Callable[[], None]) -> None:
        """Run `fn` as soon as readers can see `position` (now, if they already can).

        Wake-ups must wait for this: a write that commits while an earlier id is still in flight
        is not yet visible, and waking its readers then would let them sync up to the old
        position and park again; nobody would wake them when the earlier id completes.
        """
        if position <= self._current:
            fn()
        else:
            heapq.heappush(self._on_visible, (position, next(self._seq), fn))

    def peek_next(self) -> int:
        return self._last_issued + 1

    @asynccontextmanager
    async def next(self) -> AsyncIterator[int]:
        ids = self._issue(1)
        try:
            yield ids[0]
        finally:
            self._complete(ids)

    @asynccontextmanager
    async def next_n(self, n: int) -> AsyncIterator[list[int]]:
        ids = self._issue(n)
        try:
            yield ids
        finally:
            self._complete(ids)

    def _issue(self, n: int) -> list[int]:
        ids = list(range(self._last_issued + 1, self._last_issued + 1 + n))
        self._last_issued += n
        self._in_flight.update(ids)
        return ids

    def _complete(self, ids: list[int]) -> None:
        # Failed ids are completed too: they leave a harmless gap in the stream.
        self._in_flight.difference_update(ids)
        new_current = min(self._in_flight) - 1 if self._in_flight else self._last_issued
        if new_current > self._current:
            self._advanced(new_current)

    def _advanced(self, position: int) -> None:
        self._current = position
        for fn in self._listeners:
            fn(self.name, position)
        while self._on_visible and self._on_visible[0][0] <= position:
            _, _, callback = heapq.heappop(self._on_visible)
            try:
                callback()
            except Exception:  # a failed wake-up must not fail the writer that completed
                logger.exception("%s stream: callback at %d failed", self.name, position)

    def advance_to(self, position: int) -> None:
        """Another process persisted up to `position` (scale-out replication)."""
        if position > self._last_issued:
            self._last_issued = position
        if position > self._current and not self._in_flight:
            self._advanced(position)
