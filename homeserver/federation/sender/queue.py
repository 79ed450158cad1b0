"""One destination's queue: at most one transaction in flight, retried until acknowledged.

Each round, in order:
1. A transaction already in flight (persisted with its id and exact body, so a retry - also after
   a crash - is the same transaction and the receiver can deduplicate it) is sent again.
2. In catch-up mode (the destination missed PDUs: its queue passed the cap, or a transaction was
   refused), the latest local event(s) of each room it missed are sent instead of the whole
   backlog - the room's forward extremities that are ours, else the latest event meant for it -
   and the receiver fetches the gap with /get_missing_events, as with Synapse.
3. Otherwise up to 50 queued PDUs and 100 EDUs (persisted ones, then in-memory ephemeral ones)
   become a new transaction.
While the destination backs off (federation/backoff.py) nothing is sent and the persisted queue
is kept; ephemeral EDUs (typing, presence, receipts) are dropped, as Synapse does - they would be
stale by the time it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import DatabaseUnavailableError
from homeserver.core.ids import server_of
from homeserver.federation.backoff import DestinationBackoff, NotRetryingDestination
from homeserver.federation.client import FederationClient
from homeserver.federation.sender import metrics
from homeserver.federation.sender.transaction import (
    MAX_EDUS_PER_TXN,
    MAX_PDUS_PER_TXN,
    Outcome,
    edu,
    load_pdus,
    send_transaction,
)
from homeserver.state.service import StateService
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.federation_queue import FederationQueueStore, InFlightTxn, QueuedPdu

logger = logging.getLogger(__name__)

# How many ephemeral EDUs a transaction takes at most, so persisted ones (to-device) keep flowing.
MAX_EPHEMERAL_PER_TXN = 50
STOP_GRACE_S = 3.0


@dataclass
class SenderContext:
    """What every destination queue shares (built once by FederationSender)."""

    server_name: str
    store: FederationQueueStore
    client: FederationClient
    backoff: DestinationBackoff
    events: EventStore
    state: StateService
    clock: Clock
    # Serialises mode changes (catch-up on/off) with the events follower queueing PDUs.
    lock: asyncio.Lock
    # destination -> queued PDU count (kept in step with the database; decides the cap)
    pdu_counts: dict[str, int] = field(default_factory=dict)
    edu_counts: dict[str, int] = field(default_factory=dict)
    catching_up: set[str] = field(default_factory=set)
    txn_prefix: str = ""


class DestinationQueue:
    def __init__(self, ctx: SenderContext, destination: str, on_idle: Callable[[str], None]) -> None:
        self.ctx = ctx
        self.destination = destination
        self.on_idle = on_idle
        # (edu_type, key) -> EDU; unkeyed EDUs get a unique key
        self.ephemeral: dict[tuple[str, str], dict[str, Any]] = {}
        self._serial = 0
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._retry_timer: asyncio.TimerHandle | None = None
        self.last_error: str | None = None
        # After a refused transaction (4xx): no sending before this time (ms).
        self.paused_until = 0

    # -- scheduling ------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def add_ephemeral(self, edu_type: str, content: dict[str, Any], key: str | None) -> None:
        if key is None:
            self._serial += 1
            key = f"#{self._serial}"
        self.ephemeral.pop((edu_type, key), None)  # a replaced one moves to the end
        self.ephemeral[(edu_type, key)] = edu(edu_type, content)

    def wake(self) -> None:
        if self.active:
            self._again = True
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        self._again = False
        self._task = asyncio.create_task(self._run(), name=f"federation-send-{self.destination}")

    async def stop(self) -> None:
        """Give the transaction in hand a moment to be answered, then stop. Cancelling is safe: it
        was persisted before it was sent, and the next start sends it again under the same id."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=STOP_GRACE_S)
            except TimeoutError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _retry_later(self, retry_at_ms: int) -> None:
        delay = max(0.05, (retry_at_ms - self.ctx.clock.time_ms()) / 1000)
        loop = asyncio.get_running_loop()
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer = loop.call_later(delay, self._retry_due)

    def _retry_due(self) -> None:
        self._retry_timer = None
        self.wake()

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                if self.ctx.clock.time_ms() < self.paused_until:
                    self.ephemeral.clear()
                    self._retry_later(self.paused_until)
                    return
                try:
                    await self.ctx.backoff.check(self.destination)
                except NotRetryingDestination as exc:
                    self.ephemeral.clear()
                    self._retry_later(exc.retry_at_ms)
                    return
                progressed = await self._round()
                if not progressed and not self._again:
                    break
        except asyncio.CancelledError:
            raise
        except DatabaseUnavailableError as exc:
            logger.warning("federation sender: queue for %s paused: %s", self.destination, exc)
            self._retry_later(self.ctx.clock.time_ms() + 10_000)
            return
        except Exception:
            logger.exception("federation sender: queue for %s failed", self.destination)
            self._retry_later(self.ctx.clock.time_ms() + 10_000)
            return
        if not self.ephemeral:
            self.on_idle(self.destination)

    # -- one round -------------------------------------------------------------------------------

    async def _round(self) -> bool:
        """Send one transaction if there is anything to send; False when idle or failing."""
        state = await self.ctx.store.get_state(self.destination)
        txn = state.in_flight
        if txn is None:
            if self.destination in self.ctx.catching_up:
                txn = await self._catch_up_txn(state.last_successful_stream_ordering or 0)
                if txn is None:
                    return await self._finish_catch_up(state.last_successful_stream_ordering or 0)
            else:
                txn = await self._new_txn()
                if txn is None:
                    return False
        return await self._send(txn)

    def _body(self, pdus: list[dict[str, Any]], edus: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "origin": self.ctx.server_name,
            "origin_server_ts": self.ctx.clock.time_ms(),
            "pdus": pdus,
            "edus": edus,
        }

    def _take_ephemeral(self, room: int) -> list[dict[str, Any]]:
        taken = []
        for key in list(self.ephemeral)[: min(room, MAX_EPHEMERAL_PER_TXN)]:
            taken.append(self.ephemeral.pop(key))
        return taken

    async def _begin(
        self, pdus: list[dict[str, Any]], edus: list[dict[str, Any]], orderings: list[int], seqs: list[int]
    ) -> InFlightTxn:
        prefix = self.ctx.txn_prefix
        return await self.ctx.store.begin_txn(
            self.destination, lambda seq: f"{prefix}{seq}", self._body(pdus, edus), orderings, seqs
        )

    async def _new_txn(self) -> InFlightTxn | None:
        store = self.ctx.store
        queued = await store.list_pdus(self.destination, MAX_PDUS_PER_TXN)
        persisted = await store.list_edus(self.destination, MAX_EDUS_PER_TXN)
        ephemeral = self._take_ephemeral(MAX_EDUS_PER_TXN - len(persisted))
        if not queued and not persisted and not ephemeral:
            return None
        pdus = await load_pdus(self.ctx.events, [p.event_id for p in queued])
        edus = [edu(e.edu_type, e.content) for e in persisted] + ephemeral
        return await self._begin(pdus, edus, [p.stream_ordering for p in queued], [e.seq for e in persisted])

    async def _catch_up_txn(self, after: int) -> InFlightTxn | None:
        """The latest local events of the rooms the destination missed, up to 50 PDUs."""
        rooms = await self.ctx.store.list_catch_up_rooms(self.destination, after, MAX_PDUS_PER_TXN)
        if not rooms:
            return None
        event_ids: list[str] = []
        upto = after
        for room in rooms:
            chosen = await self._catch_up_events(room)
            if event_ids and len(event_ids) + len(chosen) > MAX_PDUS_PER_TXN:
                break
            event_ids.extend(e for e in chosen if e not in event_ids)
            upto = room.stream_ordering
        pdus = await load_pdus(self.ctx.events, event_ids[:MAX_PDUS_PER_TXN])
        persisted = await self.ctx.store.list_edus(self.destination, MAX_EDUS_PER_TXN)
        logger.info(
            "federation sender: catching %s up: %d PDU(s) for %d room(s)",
            self.destination,
            len(pdus),
            len(rooms),
        )
        # `upto` as the transaction's one "PDU ordering": acknowledging it moves
        # last_successful_stream_ordering past these rooms.
        return await self._begin(
            pdus, [edu(e.edu_type, e.content) for e in persisted], [upto], [e.seq for e in persisted]
        )

    async def _catch_up_events(self, room: QueuedPdu) -> list[str]:
        snapshot = await self.ctx.state.get(room.room_id)
        if snapshot is not None and room.event_id not in snapshot.extremities:
            found = await self.ctx.events.get_events(list(snapshot.extremities))
            ours = [
                e
                for e in snapshot.extremities
                if e in found and server_of(found[e].event.sender) == self.ctx.server_name
            ]
            if ours:
                return ours
        return [room.event_id]

    async def _finish_catch_up(self, upto: int) -> bool:
        async with self.ctx.lock:
            done = await self.ctx.store.finish_catch_up(self.destination, upto)
            if done:
                self.ctx.catching_up.discard(self.destination)
                logger.info("federation sender: %s has caught up", self.destination)
        return True  # either way, look again (queued PDUs or more rooms)

    # -- sending ---------------------------------------------------------------------------------

    async def _send(self, txn: InFlightTxn) -> bool:
        ctx = self.ctx
        outcome, reason = await send_transaction(ctx.client, self.destination, txn.txn_id, txn.body)
        pdus, edus = len(txn.body.get("pdus", ())), len(txn.body.get("edus", ()))
        if outcome is Outcome.DELIVERED:
            self.last_error = None
            logger.debug("TX [%s] %s sent: %d PDU(s), %d EDU(s)", self.destination, txn.txn_id, pdus, edus)
            async with ctx.lock:  # the counts must not race the events follower's increments
                await ctx.store.complete_txn(self.destination, txn, delivered=True)
                await self._forget(txn)
            metrics.transactions_sent.inc()
            metrics.pdus_sent.inc(pdus)
            metrics.edus_sent.inc(edus)
            return True
        metrics.transactions_failed.labels(outcome.value).inc()
        self.last_error = reason
        if outcome is Outcome.RETRY:
            logger.info("TX [%s] %s failed (%s); will retry", self.destination, txn.txn_id, reason)
            self.ephemeral.clear()
            retry = await ctx.backoff.get(self.destination)
            if retry is None or retry.retry_interval == 0:
                # A failure the client does not count (429): back off anyway.
                await ctx.backoff.record_failure(self.destination)
                retry = await ctx.backoff.get(self.destination)
            assert retry is not None
            self._retry_later(retry.retry_last_ts + retry.retry_interval)
            return False
        # Refused for good (4xx) or not allowed: drop it; the rooms' latest events go out once the
        # destination takes transactions again (catch-up).
        logger.warning("TX [%s] %s dropped: %s", self.destination, txn.txn_id, reason)
        self.ephemeral.clear()
        async with ctx.lock:
            await ctx.store.complete_txn(self.destination, txn, delivered=False)
            await self._forget(txn)
            if outcome is Outcome.REJECTED and txn.pdu_orderings:
                await ctx.store.start_catch_up(self.destination)
                ctx.catching_up.add(self.destination)
                ctx.pdu_counts[self.destination] = 0
        if outcome is Outcome.REJECTED:
            # Pause this queue only: the server answers (its other endpoints - backfill, joins,
            # keys - may work), so the shared per-destination backoff is left alone.
            self.paused_until = ctx.clock.time_ms() + ctx.backoff.min_interval
            self._retry_later(self.paused_until)
        return False

    async def _forget(self, txn: InFlightTxn) -> None:
        """Recount what waits once a transaction's contents left the queues (coalescing may have
        replaced some of them meanwhile, so counting down would drift)."""
        counts = await self.ctx.store.pending_for(self.destination)
        self.ctx.pdu_counts[self.destination] = counts.pdus
        self.ctx.edu_counts[self.destination] = counts.edus
