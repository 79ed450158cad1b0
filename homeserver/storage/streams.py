"""Stream id generation with a safe "current position".

Ids are handed out in order, but transactions may commit out of order (PostgreSQL, or any
concurrent writers). A reader must never see position N before every id below N is persisted, or a
sync could skip an event forever. So the current position only advances over a gap-free prefix of
completed ids.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from homeserver.core.streams import Stream
from homeserver.storage.database import Database


class StreamIdGenerator:
    def __init__(self, name: Stream, start: int) -> None:
        self.name = name
        self._last_issued = start
        self._current = start
        self._in_flight: set[int] = set()
        self._listeners: list[Callable[[Stream, int], None]] = []

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
            self._current = new_current
            for fn in self._listeners:
                fn(self.name, new_current)

    def advance_to(self, position: int) -> None:
        """Another process persisted up to `position` (scale-out replication)."""
        if position > self._last_issued:
            self._last_issued = position
        if position > self._current and not self._in_flight:
            self._current = position
            for fn in self._listeners:
                fn(self.name, position)
