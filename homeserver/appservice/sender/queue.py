"""One appservice's transaction queue: build, persist, send, retry.

One worker task per appservice sends one transaction at a time, so the appservice sees its events
in stream order. A transaction is built from what arrived since the last one (up to 100 events,
100 ephemeral events, 100 to-device messages), stored together with the stream positions it
covers (`AppServiceTxnStore.create_txn`), then sent; it is deleted once the appservice answers
2xx. A failure (connection refused, timeout, non-2xx) retries the same transaction, with the same
id, after an exponential backoff (`backoff.py`); a successful ping (`force_retry`) retries at once.
After a restart the stored transaction is sent first, again with its id, and building resumes
from the stored positions: nothing is lost, nothing is sent under two ids.

Memory stays bounded however long the appservice is down: events are remembered as small
candidates in a window of at most `WINDOW` entries; when it overflows the window is dropped and the
events are read back from the database (`StreamBus.rows_since`) once the appservice answers again.
Ephemeral events are best effort: a bounded buffer, oldest dropped (typing from ten minutes ago
is worthless). To-device messages wait in `device_inbox` and are read from there by position.

Nothing here runs on the sending path: the bus consumers only append to the window and set an
event, so a slow or dead appservice never slows local senders.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from homeserver.appservice.api import APP_V1, AppServiceApi, AppServiceUnreachable
from homeserver.appservice.registry import ApplicationService
from homeserver.appservice.sender import metrics
from homeserver.appservice.sender.backoff import Backoff, BackoffPolicy
from homeserver.appservice.sender.body import TO_DEVICE, TransactionBodies, stored_content
from homeserver.appservice.sender.interest import InterestCache
from homeserver.core.clock import Clock
from homeserver.core.streams import EventsRow, Stream
from homeserver.replication.bus import StreamBus
from homeserver.storage.stores.appservice_txns import AppServicePositions, AppServiceTxnStore, PendingTxn

logger = logging.getLogger(__name__)

MAX_EVENTS = 100  # per transaction, as Synapse
MAX_EPHEMERAL = 100
MAX_TO_DEVICE = 100
TXN_TIMEOUT = 60.0  # seconds for one PUT /transactions


@dataclass(frozen=True, slots=True)
class Candidate:
    """An event the appservice may want: `certain` when a user namespace or the cached room
    interest said so; otherwise the room's interest is checked when the transaction is built."""

    position: int
    event_id: str
    room_id: str
    certain: bool


class AppServiceQueue:
    WINDOW = 2000
    EPHEMERAL_BUFFER = 1000
    DEVICE_LIST_BUFFER = 10_000
    DB_PAGE = 500
    POSITION_SAVE_INTERVAL_MS = 30_000

    def __init__(
        self,
        service: ApplicationService,
        store: AppServiceTxnStore,
        bodies: TransactionBodies,
        api: AppServiceApi,
        interest: InterestCache,
        bus: StreamBus,
        clock: Clock,
        policy: BackoffPolicy,
    ) -> None:
        self.service = service
        self.store = store
        self.bodies = bodies
        self.api = api
        self.interest = interest
        self.bus = bus
        self.clock = clock
        self.backoff = Backoff(policy)
        # Stream positions covered by transactions (in memory; persisted with each transaction
        # and, for stretches with nothing to send, every POSITION_SAVE_INTERVAL_MS).
        self.events_pos = 0
        self.to_device_pos = 0
        self._saved = (0, 0)
        self._saved_at = 0
        # Every candidate with position in (window_start, seen_upto] is in the window; what lies
        # between events_pos and window_start is read from the database.
        self.window: deque[Candidate] = deque()
        self.window_start = 0
        self.seen_upto = 0
        self._ephemeral: deque[dict[str, Any]] = deque()
        self._to_device_seen = 0
        self._to_device_dirty = True  # catch up from the stored position after a start
        self._device_lists: set[str] = set()
        self._pending: deque[PendingTxn] = deque()
        self.last_success_ts = 0
        self._down_since = 0
        self._wake = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._building = False
        self.started = False

    @property
    def id(self) -> str:
        return self.service.id

    # -- start / stop -------------------------------------------------------------------------------

    async def load(self, positions: AppServicePositions) -> None:
        self.events_pos = positions.events_position
        self.to_device_pos = positions.to_device_position
        self._saved = (self.events_pos, self.to_device_pos)
        self._pending = deque(await self.store.list_pending_txns(self.id))
        if self._pending:
            logger.info(
                "appservice %s: %d unacknowledged transaction(s) from before the restart, resending",
                self.id,
                len(self._pending),
            )

    def start(self, events_position: int, to_device_position: int) -> None:
        """Called with the streams' current positions once loaded, with no await in between, so
        the window starts exactly where the bus announcements to this queue start."""
        self.window_start = self.seen_upto = max(events_position, self.events_pos)
        self._to_device_seen = max(to_device_position, self.to_device_pos)
        self.started = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"appservice-{self.id}")

    async def stop(self) -> None:
        self.started = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def force_retry(self) -> None:
        """Retry now instead of at the end of the backoff (the appservice answered a ping)."""
        if not self.backoff.up:
            logger.info("appservice %s: retrying at once", self.id)
        self._retry_now.set()

    # -- offered by the bus consumers (synchronous, cheap) ---------------------------------------

    def offer_event(self, row: EventsRow, certain: bool) -> None:
        if row.stream_ordering <= self.window_start:
            return
        if len(self.window) >= self.WINDOW:
            # Too much waiting (the appservice is down or slow): forget the window, the worker
            # reads these events back from the database when it gets to them.
            self.window.clear()
            self.window_start = row.stream_ordering - 1
        self.window.append(Candidate(row.stream_ordering, row.event_id, row.room_id, certain))
        self._wake.set()

    def note_events_position(self, position: int) -> None:
        if position > self.seen_upto:
            self.seen_upto = position
        if not self._building and not self.window and self.window_start <= self.events_pos:
            # Nothing for this appservice up to here (saved with the next transaction or at stop).
            self.events_pos = max(self.events_pos, self.seen_upto)

    def offer_ephemeral(self, event: dict[str, Any]) -> None:
        self._ephemeral.append(event)
        if len(self._ephemeral) > self.EPHEMERAL_BUFFER:
            self._ephemeral.popleft()
            metrics.dropped_ephemeral.labels(self.id).inc()
        self._wake.set()

    def note_to_device(self, position: int, interesting: bool) -> None:
        if position > self._to_device_seen:
            self._to_device_seen = position
        if interesting:
            self._to_device_dirty = True
            self._wake.set()

    def offer_device_list_change(self, user_id: str) -> None:
        if len(self._device_lists) < self.DEVICE_LIST_BUFFER:
            self._device_lists.add(user_id)
        self._wake.set()

    # -- the worker -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if self._pending:
                    txn = self._pending[0]
                else:
                    self._wake.clear()
                    built = await self._build()
                    if built is None:
                        await self._wake.wait()
                        continue
                    txn = built
                    self._pending.append(txn)
                if await self._send(txn):
                    await self.store.delete_txn(self.id, txn.txn_id)
                    self._pending.popleft()
                else:
                    await self._wait(self.backoff.interval)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the database is away: try again, the state is consistent
                logger.exception("appservice %s: transaction queue failed; retrying", self.id)
                await self._wait(self.backoff.policy.min_s)

    async def _wait(self, delay: float) -> None:
        """Sleep `delay` seconds, or until `force_retry`."""
        self._retry_now.clear()
        try:
            await asyncio.wait_for(self._retry_now.wait(), delay)
        except TimeoutError:
            pass

    # -- building ---------------------------------------------------------------------------------

    async def _build(self) -> PendingTxn | None:
        self._building = True
        try:
            return await self._build_next()
        finally:
            self._building = False

    async def _build_next(self) -> PendingTxn | None:
        event_ids: list[str] = []
        try:
            events_pos, event_ids = await self._take_events()
        except Exception:
            self._reset_window()
            raise
        ephemeral = [self._ephemeral.popleft() for _ in range(min(MAX_EPHEMERAL, len(self._ephemeral)))]
        to_device_pos, to_device = await self._take_to_device()
        device_lists = self._take_device_lists()
        if not (event_ids or ephemeral or to_device or device_lists):
            self.events_pos, self.to_device_pos = events_pos, to_device_pos
            await self._maybe_save_positions()
            return None
        content = stored_content(event_ids, ephemeral, to_device, device_lists)
        try:
            txn = await self.store.create_txn(
                self.id,
                content,
                len(event_ids),
                events_position=events_pos,
                to_device_position=to_device_pos,
                now=self.clock.time_ms(),
            )
        except Exception:
            # Nothing was stored: take the same things again next time.
            self._reset_window()
            self._ephemeral.extendleft(reversed(ephemeral))
            self._to_device_dirty = True
            self._device_lists.update(device_lists.get("changed", []) if device_lists else [])
            raise
        self.events_pos, self.to_device_pos = events_pos, to_device_pos
        self._saved = (events_pos, to_device_pos)
        self._saved_at = self.clock.time_ms()
        return txn

    def _reset_window(self) -> None:
        self.window.clear()
        self.window_start = self.seen_upto

    async def _take_events(self) -> tuple[int, list[str]]:
        """Up to MAX_EVENTS interesting event ids after events_pos, and the position they reach."""
        pos = self.events_pos
        ids: list[str] = []
        while pos < self.window_start and len(ids) < MAX_EVENTS:
            upto = self.window_start
            rows = await self.bus.rows_since(Stream.EVENTS, pos, upto=upto, limit=self.DB_PAGE)
            for row in rows:
                if not isinstance(row, EventsRow):
                    continue
                if row.is_live and await self.interest.interested_in_event(self.service, row):
                    ids.append(row.event_id)
                pos = row.stream_ordering
                if len(ids) >= MAX_EVENTS:
                    break
            else:
                if len(rows) < self.DB_PAGE:
                    pos = max(pos, upto)
        if pos < self.window_start:
            return pos, ids
        while self.window and len(ids) < MAX_EVENTS:
            candidate = self.window.popleft()
            if candidate.position <= pos:
                continue
            if candidate.certain or self.id in await self.interest.for_room(candidate.room_id):
                ids.append(candidate.event_id)
            pos = candidate.position
            if self.window_start > pos:  # the window overflowed meanwhile: the rest from the DB
                return pos, ids
        if not self.window and self.window_start <= pos:
            pos = max(pos, self.seen_upto)
        return pos, ids

    async def _take_to_device(self) -> tuple[int, list[dict[str, Any]]]:
        pos = self.to_device_pos
        if not self.service.wants_to_device:
            return max(pos, self._to_device_seen), []
        if not self._to_device_dirty:
            return max(pos, self._to_device_seen), []
        self._to_device_dirty = False
        upto = self._to_device_seen
        out: list[dict[str, Any]] = []
        while pos < upto and len(out) < MAX_TO_DEVICE:
            messages = await self.store.list_inbox_after(pos, upto, self.DB_PAGE)
            for m in messages:
                if self.id in self.interest.for_user(m.user_id):
                    out.append(
                        {
                            "type": m.type,
                            "sender": m.sender,
                            "content": m.content,
                            "to_user_id": m.user_id,
                            "to_device_id": m.device_id,
                        }
                    )
                pos = m.stream_id
                if len(out) >= MAX_TO_DEVICE:
                    break
            else:
                if len(messages) < self.DB_PAGE:
                    pos = upto
        if pos < upto:
            self._to_device_dirty = True  # more next time
        return pos, out

    def _take_device_lists(self) -> dict[str, list[str]] | None:
        if not self._device_lists or not self.service.msc3202:
            self._device_lists.clear()
            return None
        changed = sorted(self._device_lists)
        self._device_lists.clear()
        return {"changed": changed, "left": []}

    async def _maybe_save_positions(self) -> None:
        now = self.clock.time_ms()
        current = (self.events_pos, self.to_device_pos)
        if current == self._saved or now - self._saved_at < self.POSITION_SAVE_INTERVAL_MS:
            return
        await self.store.update_positions(self.id, *current)
        self._saved, self._saved_at = current, now

    async def save_positions(self) -> None:
        """At shutdown: remember how far nothing needed sending (saves a rescan after restart)."""
        if not self._pending and (self.events_pos, self.to_device_pos) != self._saved:
            await self.store.update_positions(self.id, self.events_pos, self.to_device_pos)
            self._saved = (self.events_pos, self.to_device_pos)

    # -- sending ----------------------------------------------------------------------------------

    async def _send(self, txn: PendingTxn) -> bool:
        body = await self.bodies.body(self.service, txn.content)
        label = self.id
        try:
            resp = await self.api.request(
                self.service, "PUT", f"{APP_V1}/transactions/{txn.txn_id}", body=body, time_limit=TXN_TIMEOUT
            )
        except AppServiceUnreachable as exc:
            error = str(exc)
        else:
            if 200 <= resp.status < 300:
                metrics.sent_transactions.labels(label).inc()
                metrics.sent_events.labels(label).inc(len(body["events"]))
                ephemeral = txn.content.get("ephemeral", [])
                if ephemeral:
                    metrics.sent_ephemeral.labels(label).inc(len(ephemeral))
                to_device = txn.content.get(TO_DEVICE, [])
                if to_device:
                    metrics.sent_todevice.labels(label).inc(len(to_device))
                self._succeeded()
                return True
            error = f"HTTP {resp.status}: {resp.body[:200].decode('utf-8', 'replace')}"
        metrics.failed_transactions.labels(label).inc()
        self._failed(txn, error)
        return False

    def _succeeded(self) -> None:
        now = self.clock.time_ms()
        if not self.backoff.up:
            logger.warning(
                "appservice %s is reachable again after %d failed attempts (%d s)",
                self.id,
                self.backoff.failures,
                (now - self._down_since) // 1000,
            )
        self.backoff.reset()
        self.last_success_ts = now

    def _failed(self, txn: PendingTxn, error: str) -> None:
        first = self.backoff.up
        delay = self.backoff.failed()
        if first:
            self._down_since = self.clock.time_ms()
            logger.warning(
                "appservice %s: transaction %d (%d events) failed (%s); retrying in %.1f s",
                self.id,
                txn.txn_id,
                txn.event_count,
                error,
                delay,
            )
        else:
            logger.info(
                "appservice %s: transaction %d failed again (attempt %d: %s); retrying in %.1f s",
                self.id,
                txn.txn_id,
                self.backoff.failures,
                error,
                delay,
            )

    # -- metrics ------------------------------------------------------------------------------------

    @property
    def pending_events(self) -> int:
        return sum(t.event_count for t in self._pending) + len(self.window)

    @property
    def pending_transactions(self) -> int:
        return len(self._pending)
