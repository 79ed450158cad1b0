"""The stream bus: every commit that moves a stream is announced here as typed rows.

`publish(stream, position, rows)` is called by the one writer of a stream right after its
transaction commits, with the stream's new gap-free position (`StreamIdGenerator.current`) and the
rows that commit wrote. Consumers (`subscribe`) are called synchronously, in subscription order,
before `publish` returns: caches and indexes are updated and waiting /syncs woken with no await in
between, so a reader that takes the notifier's token and then reads an index sees a consistent
pair (see state/indexes.py). A consumer must therefore be quick and must not await; work that
needs I/O is spawned as a task by the consumer.

In one process this in-memory bus is the whole story. With worker processes the same
announcements travel over Redis (rows are plain frozen dataclasses, `core.streams.row_to_json`),
and a process that missed some (start-up, a dropped connection) asks `rows_since` for the rows
after its last position: each stream registers a source that reads them back from the database
through its store's `*_since` method.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from homeserver.core.streams import Stream, StreamRow

logger = logging.getLogger(__name__)

Consumer = Callable[[int, Sequence[StreamRow]], None]
# (after, upto, limit) -> rows with after < position <= upto, oldest first, at most `limit`
RowSource = Callable[[int, int, int], Awaitable[Sequence[StreamRow]]]


class StreamBus:
    def __init__(self) -> None:
        self._consumers: dict[Stream, list[Consumer]] = {s: [] for s in Stream}
        self._sources: dict[Stream, RowSource] = {}
        # The last position announced per stream (what a new subscriber starts from).
        self.positions: dict[Stream, int] = {s: 0 for s in Stream}

    def subscribe(self, stream: Stream, consumer: Consumer) -> None:
        self._consumers[stream].append(consumer)

    def publish(self, stream: Stream, position: int, rows: Sequence[StreamRow]) -> None:
        if position > self.positions[stream]:
            self.positions[stream] = position
        for consumer in self._consumers[stream]:
            try:
                consumer(position, rows)
            except Exception:  # one broken consumer must not starve the others
                logger.exception("stream consumer %r failed on %s at %d", consumer, stream.value, position)

    # -- catch-up --------------------------------------------------------------------------------

    def register_source(self, stream: Stream, source: RowSource) -> None:
        self._sources[stream] = source

    def has_source(self, stream: Stream) -> bool:
        return stream in self._sources

    async def rows_since(
        self, stream: Stream, position: int, upto: int | None = None, limit: int = 1000
    ) -> Sequence[StreamRow]:
        """Rows of `stream` after `position` (up to `upto`, default the last announced position),
        oldest first, read from the database. Streams kept only in memory (typing) have none."""
        source = self._sources.get(stream)
        if source is None:
            raise LookupError(f"stream {stream.value} cannot be caught up from the database")
        return await source(position, self.positions[stream] if upto is None else upto, limit)
