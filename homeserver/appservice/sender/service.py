"""Pushing events to application services: the stream-bus consumers and the per-appservice queues.

Every appservice with a `url` gets an `AppServiceQueue`. The events consumer decides, per live
event, which queues may want it (interest.py: user namespaces from a per-user cache, the room from
a per-room cache; an uncached room is decided later by the queue) and appends a small candidate;
to-device announcements mark the queues of appservices whose users got messages; typing,
receipts, presence and device lists go to the `EphemeralRouter`. All of it is synchronous and
constant-time per event and appservice, so sending is never slowed by an appservice.

Only the main process runs the sender (it owns the transaction ids); start() must run once the
bus knows the streams' positions and before the persister starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from homeserver.appservice.api import AppServiceApi
from homeserver.appservice.registry import AppServiceRegistry
from homeserver.appservice.sender import metrics
from homeserver.appservice.sender.backoff import BackoffPolicy
from homeserver.appservice.sender.body import TransactionBodies
from homeserver.appservice.sender.ephemeral import EphemeralRouter
from homeserver.appservice.sender.interest import InterestCache
from homeserver.appservice.sender.queue import AppServiceQueue
from homeserver.core.clock import Clock
from homeserver.core.streams import EventsRow, Stream, StreamRow, ToDeviceRow
from homeserver.metrics import CallbackGauge
from homeserver.replication.bus import StreamBus
from homeserver.services.presence import PresenceService
from homeserver.services.receipts import ReceiptService
from homeserver.services.serialize import EventSerializer
from homeserver.state.current import CurrentStateCache
from homeserver.state.indexes import MembershipIndex
from homeserver.storage.stores.appservice_txns import AppServiceTxnStore
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.rooms import RoomStore

logger = logging.getLogger(__name__)


class AppServiceSender:
    def __init__(
        self,
        registry: AppServiceRegistry,
        store: AppServiceTxnStore,
        api: AppServiceApi,
        bus: StreamBus,
        events: EventStore,
        serializer: EventSerializer,
        rooms: RoomStore,
        state: CurrentStateCache,
        receipts: ReceiptService,
        presence: PresenceService,
        memberships: MembershipIndex,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self.store = store
        self.bus = bus
        self.policy = BackoffPolicy()
        services = [s for s in registry.all() if s.url is not None]
        self.interest = InterestCache(services, rooms, state, server_name=server_name)
        bodies = TransactionBodies(events, serializer, state, store, server_name=server_name)
        self.queues: dict[str, AppServiceQueue] = {
            s.id: AppServiceQueue(s, store, bodies, api, self.interest, bus, clock, self.policy)
            for s in services
        }
        self._to_device = [q for q in self.queues.values() if q.service.wants_to_device]
        self.ephemeral = EphemeralRouter(self.queues, self.interest, receipts, presence, memberships, clock)
        self.started = False

    def subscribe(self) -> None:
        """Subscribe to the bus (container wiring); nothing when no appservice has a url."""
        if not self.queues:
            return
        self.bus.subscribe(Stream.EVENTS, self.on_events)
        self.bus.subscribe(Stream.TO_DEVICE, self.on_to_device)
        if self.ephemeral.ephemeral:
            for stream in (Stream.TYPING, Stream.RECEIPTS, Stream.PRESENCE):
                self.bus.subscribe(stream, self.on_ephemeral)
        if self.ephemeral.device_lists:
            self.bus.subscribe(Stream.DEVICE_LISTS, self.on_ephemeral)
        self._bind_metrics()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        for queue in self.queues.values():
            positions = await self.store.get_positions(queue.id)
            if positions is None:
                # A new registration: it starts from now, history is not replayed.
                await self.store.insert_positions(
                    queue.id, self.bus.positions[Stream.EVENTS], self.bus.positions[Stream.TO_DEVICE]
                )
                positions = await self.store.get_positions(queue.id)
                assert positions is not None
            await queue.load(positions)
        # No await from here on: each window starts exactly at the announced positions.
        for queue in self.queues.values():
            queue.start(self.bus.positions[Stream.EVENTS], self.bus.positions[Stream.TO_DEVICE])
        self.ephemeral.start()
        self.started = bool(self.queues)

    async def stop(self) -> None:
        self.started = False
        await self.ephemeral.stop()
        for queue in self.queues.values():
            await queue.stop()
            try:
                await queue.save_positions()
            except Exception:  # shutting down; the next start rescans a little more
                logger.warning("appservice %s: could not save its positions at shutdown", queue.id)

    def force_retry(self, service_id: str) -> None:
        """The appservice answered (ping): retry its pending transaction now."""
        queue = self.queues.get(service_id)
        if queue is not None:
            queue.force_retry()

    # -- bus consumers (synchronous) --------------------------------------------------------------

    def on_events(self, position: int, rows: Sequence[StreamRow]) -> None:
        if not self.started:
            return
        queues = self.queues.values()
        for row in rows:
            if not isinstance(row, EventsRow) or not row.is_live:
                continue
            self.interest.on_event_row(row)
            by_user = self.interest.for_event_users(row)
            by_room = self.interest.cached_room(row.room_id)
            for queue in queues:
                if queue.id in by_user or (by_room is not None and queue.id in by_room):
                    queue.offer_event(row, certain=True)
                elif by_room is None:
                    queue.offer_event(row, certain=False)
        for queue in queues:
            queue.note_events_position(position)

    def on_to_device(self, position: int, rows: Sequence[StreamRow]) -> None:
        if not self.started:
            return
        for queue in self._to_device:
            interesting = any(
                isinstance(r, ToDeviceRow) and queue.id in self.interest.for_user(r.user_id) for r in rows
            )
            queue.note_to_device(position, interesting)

    def on_ephemeral(self, position: int, rows: Sequence[StreamRow]) -> None:
        if self.started:
            self.ephemeral.on_rows(position, rows)

    # -- metrics ----------------------------------------------------------------------------------

    def _bind_metrics(self) -> None:
        lag = self.bus.positions
        gauges: list[tuple[CallbackGauge, Callable[[AppServiceQueue], float]]] = [
            (metrics.pending_events, lambda q: q.pending_events),
            (metrics.pending_transactions, lambda q: q.pending_transactions),
            (metrics.stream_lag, lambda q: max(0, lag[Stream.EVENTS] - q.events_pos)),
            (metrics.up, lambda q: 1 if q.backoff.up else 0),
            (metrics.backoff_seconds, lambda q: q.backoff.interval),
            (metrics.consecutive_failures, lambda q: q.backoff.failures),
            (metrics.last_success, lambda q: q.last_success_ts / 1000),
        ]
        for gauge, read in gauges:
            gauge.bind(self, _per_queue(read))


def _per_queue(
    read: Callable[[AppServiceQueue], float],
) -> Callable[[AppServiceSender], dict[tuple[str, ...], float]]:
    return lambda sender: {(q.id,): float(read(q)) for q in sender.queues.values()}
