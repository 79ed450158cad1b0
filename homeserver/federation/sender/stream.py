"""Following a stream from a persisted position, exactly once per row.

The bus consumer only buffers the announced rows and wakes a task: the commit that published them
(a client's message) never waits for federation work. The task hands each batch to a handler in
two steps - `prepare(rows)` reads what it needs, the returned `write(conn)` queues the result - and
the stream position is saved in the same transaction as the queue rows. After a restart (or when
the buffer overflowed, or rows arrived before the task started) the missed rows are read back
from the database with `StreamBus.rows_since`: nothing is lost, nothing is queued twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from homeserver.core.errors import DatabaseUnavailableError
from homeserver.core.streams import DeviceListsRow, EventsRow, Stream, StreamRow
from homeserver.replication.bus import StreamBus
from homeserver.storage.database import Connection, Database
from homeserver.storage.stores.federation_queue import FederationQueueStore

logger = logging.getLogger(__name__)

Writer = Callable[[Connection], Awaitable[None]]
Prepare = Callable[[Sequence[StreamRow]], Awaitable[Writer | None]]
# Called after each committed batch (wake the destinations it touched).
AfterCommit = Callable[[], None]

MAX_BUFFERED_ROWS = 10_000
BATCH = 500
# Positions a follower may run ahead of its saved one while it queues nothing.
SAVE_EVERY = 1000


def row_position(row: StreamRow) -> int:
    if isinstance(row, EventsRow):
        return row.stream_ordering
    if isinstance(row, DeviceListsRow):
        return row.stream_id
    raise TypeError(f"no position for {type(row).__name__}")


class StreamFollower:
    def __init__(
        self,
        stream: Stream,
        bus: StreamBus,
        db: Database,
        store: FederationQueueStore,
        prepare: Prepare,
        *,
        lock: asyncio.Lock,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self.stream = stream
        self.bus = bus
        self.db = db
        self.store = store
        self.prepare = prepare
        self.lock = lock  # shared with whoever else changes the queues' modes (catch-up)
        self.after_commit = after_commit
        self.position = 0
        self._saved = 0  # the position last written to the database
        self._announced = 0
        self._buffer: deque[tuple[int, int, Sequence[StreamRow]]] = deque()
        self._buffered_rows = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while every announced row is handled
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        bus.subscribe(stream, self.on_rows)

    def on_rows(self, position: int, rows: Sequence[StreamRow]) -> None:
        prev = self._announced
        self._announced = max(self._announced, position)
        if self._task is None:
            return  # not started: start() reads everything up to here from the database
        if self._buffered_rows + len(rows) > MAX_BUFFERED_ROWS:
            # Too far behind: forget the rows, the database has them.
            self._buffer.clear()
            self._buffered_rows = 0
        else:
            self._buffer.append((prev, position, rows))
            self._buffered_rows += len(rows)
        self._idle.clear()
        self._wake.set()

    async def start(self) -> None:
        stored = await self.store.get_position(self.stream.value)
        current = self.bus.positions[self.stream]
        self._announced = max(self._announced, current)
        if stored is None:
            # First start: what happened before federation sending existed is not news.
            stored = current
            async with self.db.transaction() as conn:
                await self.store.set_position_txn(conn, self.stream.value, stored)
        self.position = self._saved = stored
        self._task = asyncio.create_task(self._run(), name=f"federation-sender-{self.stream.value}")
        self._wake.set()

    async def stop(self) -> None:
        """Finish the batch in hand (its rows are committed or not at all), then stop."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=10)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.position > self._saved:
            try:
                async with self.db.transaction() as conn:
                    await self.store.set_position_txn(conn, self.stream.value, self.position)
                self._saved = self.position
            except Exception:  # the database is gone: the rows are read again at the next start
                logger.warning(
                    "federation sender: could not save the %s position at shutdown", self.stream.value
                )

    async def drained(self) -> None:
        """Wait until every announced row is handled (tests, shutdown)."""
        if self._task is not None and not self._task.done():
            await self._idle.wait()

    async def _run(self) -> None:
        while not self._stopping:
            if self.position >= self._announced:
                self._idle.set()
            await self._wake.wait()
            self._wake.clear()
            while self.position < self._announced and not self._stopping:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except DatabaseUnavailableError as exc:
                    logger.warning(
                        "federation sender: %s rows wait for the database: %s", self.stream.value, exc
                    )
                    await asyncio.sleep(1)
                except Exception:
                    logger.exception(
                        "federation sender: handling %s rows failed; retrying", self.stream.value
                    )
                    await asyncio.sleep(1)

    def _next_batch_from_buffer(self) -> tuple[int, list[StreamRow]] | None:
        while self._buffer and self._buffer[0][1] <= self.position:
            _, _, rows = self._buffer.popleft()
            self._buffered_rows -= len(rows)
        if not self._buffer or self._buffer[0][0] > self.position:
            return None
        _, upto, rows = self._buffer.popleft()
        self._buffered_rows -= len(rows)
        return upto, [r for r in rows if row_position(r) > self.position]

    async def _step(self) -> None:
        batch = self._next_batch_from_buffer()
        if batch is None:
            target = self._announced
            rows = list(await self.bus.rows_since(self.stream, self.position, target, BATCH))
            upto = target
            if len(rows) >= BATCH:
                last = row_position(rows[-1])
                # Rows sharing the last position may have been cut off: take them next time.
                cut = [r for r in rows if row_position(r) < last]
                if cut:
                    rows, upto = cut, last - 1
                else:
                    upto = last
        else:
            upto, rows = batch
        write = await self.prepare(rows) if rows else None
        if write is None and upto - self._saved < SAVE_EVERY:
            # Nothing to queue (most events: rooms without other servers): no write per commit.
            # Re-reading these rows after a crash queues nothing either, so saving the position
            # now and then is enough.
            self.position = upto
            return
        async with self.lock:
            async with self.db.transaction() as conn:
                if write is not None:
                    await write(conn)
                await self.store.set_position_txn(conn, self.stream.value, upto)
        self.position = self._saved = upto
        if self.after_commit is not None and rows:
            self.after_commit()
