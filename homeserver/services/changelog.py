"""Recent changes of an in-memory ephemeral stream, for "what changed since this token".

Receipts, typing and presence keep one `ChangeLog` each: (position, key) pairs in position order
plus the latest position per key. A sync asks which of its candidate keys (the user's rooms, or
users) changed after its token; the log answers from memory in time proportional to the smaller of
"changes since the token" and "candidates". Tokens older than `floor` (from before this process
started, or trimmed away) are not covered: the caller then falls back to the database.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Collection, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class ChangeLog(Generic[K]):
    KEEP = 20_000

    def __init__(self, floor: int, keep: int | None = None) -> None:
        # Every change at a position > floor is in the log.
        self.floor = floor
        self.keep = keep or self.KEEP
        self._entries: list[tuple[int, K]] = []
        # key -> its latest change position (positions <= floor may linger; they are harmless)
        self.last: dict[K, int] = {}

    def add(self, position: int, key: K) -> None:
        entries = self._entries
        if not entries or entries[-1][0] <= position:
            entries.append((position, key))
        else:  # completed out of order (concurrent writers)
            insort(entries, (position, key), key=lambda e: e[0])
        if self.last.get(key, 0) < position:
            self.last[key] = position
        if len(entries) > 2 * self.keep:
            drop = len(entries) - self.keep
            self.floor = max(self.floor, entries[drop - 1][0])
            del entries[:drop]

    def covers(self, after: int) -> bool:
        return after >= self.floor

    def keys_since(self, after: int) -> list[K] | None:
        """Keys changed at positions > after (possibly repeated), or None when not covered."""
        if after < self.floor:
            return None
        start = bisect_right(self._entries, after, key=lambda e: e[0])
        return [key for _, key in self._entries[start:]]

    def changed(self, after: int, candidates: Collection[K]) -> set[K] | None:
        """The candidates changed at positions > after, or None when not covered."""
        if after < self.floor:
            return None
        entries = self._entries
        start = bisect_right(entries, after, key=lambda e: e[0])
        if len(entries) - start <= len(candidates):
            return {key for _, key in entries[start:] if key in candidates}
        last = self.last
        return {key for key in candidates if last.get(key, 0) > after}
