"""The federation sender: local events and EDUs to the servers that must hear of them.

It follows the events stream (stream.py) and, for each live local event, queues the PDU for every
destination (destinations.py) in the same transaction that moves its persisted stream position;
each destination's queue (queue.py) then sends transactions on its own task, so nothing here
ever makes a client wait for another server. EDUs come in through `send_edu` (or
`queue_edu_txn` inside a caller's transaction): those whose loss matters are persisted, the
ephemeral ones (typing, presence, receipts) are kept in memory and coalesced by key.

A destination whose persisted PDU queue reaches `max_queued_pdus` (a server that has been down a
long time) has it dropped and goes into catch-up mode: storage stays bounded, and when it comes
back it gets the latest event of each room and fetches the rest itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.ids import server_of
from homeserver.core.streams import EventsRow, Stream, StreamRow
from homeserver.federation.backoff import DestinationBackoff
from homeserver.federation.client import FederationClient
from homeserver.federation.sender import metrics
from homeserver.federation.sender.destinations import DestinationResolver
from homeserver.federation.sender.queue import DestinationQueue, SenderContext
from homeserver.federation.sender.stream import StreamFollower, Writer
from homeserver.replication.bus import StreamBus
from homeserver.state.service import StateService
from homeserver.storage.database import Connection, Database
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.federation_queue import FederationQueueStore, QueuedPdu

logger = logging.getLogger(__name__)

# EDU types whose loss matters: persisted until the destination acknowledges them.
PERSISTED_EDU_TYPES = frozenset({"m.direct_to_device", "m.device_list_update", "m.signing_key_update"})
DEFAULT_MAX_QUEUED_PDUS = 1000


class FederationSender:
    def __init__(
        self,
        db: Database,
        bus: StreamBus,
        store: FederationQueueStore,
        client: FederationClient,
        backoff: DestinationBackoff,
        events: EventStore,
        state: StateService,
        resolver: DestinationResolver,
        clock: Clock,
        *,
        server_name: str,
        max_queued_pdus: int = DEFAULT_MAX_QUEUED_PDUS,
    ) -> None:
        self.db = db
        self.bus = bus
        self.store = store
        self.resolver = resolver
        self.server_name = server_name
        self.max_queued_pdus = max_queued_pdus
        self.ctx = SenderContext(server_name, store, client, backoff, events, state, clock, asyncio.Lock())
        self.queues: dict[str, DestinationQueue] = {}
        self._edu_seq = 0
        self._to_wake: set[str] = set()
        self._started = False
        self.events_follower = StreamFollower(
            Stream.EVENTS,
            bus,
            db,
            store,
            self._prepare_events,
            lock=self.ctx.lock,
            after_commit=self._wake_pending,
        )
        # Extra followers (device lists) registered by the EDU sources before start().
        self.followers: list[StreamFollower] = [self.events_follower]
        metrics.pending_pdus.bind(self, lambda s: {(d,): float(n) for d, n in s.ctx.pdu_counts.items() if n})
        metrics.pending_edus.bind(self, lambda s: s._pending_edu_gauge())
        metrics.catching_up.bind(self, lambda s: float(len(s.ctx.catching_up)))

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.ctx.txn_prefix = f"{self.ctx.clock.time_ms()}-"
        # EDU sequence numbers only order the queued EDUs: continuing from the largest queued is enough.
        self._edu_seq = await self.store.max_edu_seq()
        for destination, counts in (await self.store.pending_counts()).items():
            self.ctx.pdu_counts[destination] = counts.pdus
            self.ctx.edu_counts[destination] = counts.edus
        waiting = await self.store.list_destinations_with_work()
        for destination in waiting:
            if (await self.store.get_state(destination)).catching_up:
                self.ctx.catching_up.add(destination)
        self._started = True
        for follower in self.followers:
            await follower.start()
        for destination in waiting:
            self.wake_destination(destination)
        if waiting:
            logger.info("federation sender: resuming %d destination queue(s)", len(waiting))

    async def stop(self) -> None:
        """Stop reading streams (the batch in hand commits), then let in-flight transactions end;
        whatever is left stays persisted for the next start."""
        self._started = False
        for follower in self.followers:
            await follower.stop()
        await asyncio.gather(*(q.stop() for q in list(self.queues.values())))

    async def drained(self) -> None:
        """Wait until the followed streams are queued and no queue is sending (tests)."""
        for follower in self.followers:
            await follower.drained()
        while True:
            tasks = [q._task for q in self.queues.values() if q._task is not None and not q._task.done()]
            if not tasks:
                return
            await asyncio.wait(tasks)

    # -- destinations ----------------------------------------------------------------------------

    def queue_for(self, destination: str) -> DestinationQueue:
        queue = self.queues.get(destination)
        if queue is None:
            queue = self.queues[destination] = DestinationQueue(self.ctx, destination, self._idle)
        return queue

    def _idle(self, destination: str) -> None:
        """A queue's task found nothing more to send: forget the queue object (a failing one is
        kept, with its retry timer and last error for the admin API)."""
        queue = self.queues.get(destination)
        if queue is not None and not queue.ephemeral and queue.last_error is None:
            del self.queues[destination]

    def wake_destination(self, destination: str) -> None:
        """Try sending now (new work, or the destination is reachable again)."""
        if self._started:
            self.queue_for(destination).wake()

    def wake(self, destinations: Iterable[str]) -> None:
        for destination in destinations:
            self.wake_destination(destination)

    def _wake_pending(self) -> None:
        pending, self._to_wake = self._to_wake, set()
        self.wake(pending)

    def _pending_edu_gauge(self) -> dict[tuple[str, ...], float]:
        result: dict[tuple[str, ...], float] = {(d,): float(n) for d, n in self.ctx.edu_counts.items() if n}
        for destination, queue in self.queues.items():
            if queue.ephemeral:
                result[(destination,)] = result.get((destination,), 0.0) + len(queue.ephemeral)
        return result

    # -- PDUs ------------------------------------------------------------------------------------

    def is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self.server_name

    async def _prepare_events(self, rows: Sequence[StreamRow]) -> Writer | None:
        plan: list[tuple[QueuedPdu, set[str]]] = []
        for row in rows:
            if not isinstance(row, EventsRow) or not row.is_live or not self.is_local(row.sender):
                continue
            destinations = await self.resolver.for_event(row)
            if destinations:
                plan.append((QueuedPdu(row.stream_ordering, row.room_id, row.event_id), destinations))
        if not plan:
            return None

        async def write(conn: Connection) -> None:
            # Runs under ctx.lock: the catch-up flags and counts cannot change meanwhile.
            counts, catching_up = self.ctx.pdu_counts, self.ctx.catching_up
            for pdu, destinations in plan:
                for destination in sorted(destinations):
                    if destination not in catching_up and counts.get(destination, 0) >= self.max_queued_pdus:
                        logger.warning(
                            "federation sender: %d PDUs queued for %s; dropping them for catch-up",
                            counts.get(destination, 0),
                            destination,
                        )
                        await self.store.start_catch_up_txn(conn, destination)
                        catching_up.add(destination)
                        counts[destination] = 0
                    queue = destination not in catching_up
                    await self.store.queue_pdu_txn(conn, destination, pdu, queue=queue)
                    if queue:
                        counts[destination] = counts.get(destination, 0) + 1
                    self._to_wake.add(destination)

        return write

    # -- EDUs ------------------------------------------------------------------------------------

    def _edu_allowed(self, destination: str) -> bool:
        return self.resolver.allowed(destination)

    async def send_edu(
        self, destination: str, edu_type: str, content: dict[str, Any], key: str | None = None
    ) -> None:
        """Queue an EDU for `destination`. With `key`, it replaces a queued EDU of the same type and
        key (e.g. a user's latest typing or presence). Returns once it is queued (persisted for
        the types whose loss matters), never waiting for the destination."""
        if not self._edu_allowed(destination):
            return
        if edu_type in PERSISTED_EDU_TYPES:
            async with self.db.transaction() as conn:
                await self.queue_edu_txn(conn, destination, edu_type, content, key)
            self.wake_destination(destination)
            return
        self.queue_for(destination).add_ephemeral(edu_type, content, key)
        self.wake_destination(destination)

    async def queue_edu_txn(
        self,
        conn: Connection,
        destination: str,
        edu_type: str,
        content: dict[str, Any],
        key: str | None = None,
    ) -> int | None:
        """Persist an EDU inside the caller's transaction (call `wake` after the commit). Returns
        its sequence number (its place in the queue), None when the destination is refused."""
        if not self._edu_allowed(destination):
            return None
        self._edu_seq += 1
        seq = self._edu_seq
        await self.store.queue_edu_txn(conn, destination, seq, edu_type, content, key)
        self.ctx.edu_counts[destination] = self.ctx.edu_counts.get(destination, 0) + 1
        return seq

    # -- admin -----------------------------------------------------------------------------------

    def is_paused(self, destination: str) -> bool:
        queue = self.queues.get(destination)
        return queue is not None and queue.paused_until > self.ctx.clock.time_ms()

    async def reset_destination(self, destination: str) -> None:
        """Admin: clear the backoff and the transaction in flight, and try again now."""
        await self.ctx.backoff.reset(destination)
        queue = self.queues.get(destination)
        if queue is not None:
            queue.last_error = None
            queue.paused_until = 0
        self.wake_destination(destination)
