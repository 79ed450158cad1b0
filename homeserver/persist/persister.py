"""The event persister: the one writer of events, the DAG, the state at each event, the forward
extremities and the current state.

Every event reaches it as an `EventContext` (events/context.py): local drafts are built into one
inside the writer loop (`persist/local.py`, on the room's latest snapshot), federation hands in
contexts it built after verification. One background task takes every queued unit and writes the
whole batch in ONE transaction (group commit): events, edges, state groups and the state before
and after each event, forward extremities ((old - prev_events) + event, for events that change the
room), the current state (resolved when the room forks, `state/resolution.py`), and the in-
transaction hooks (push actions, user directory, search index); the rules per event live in
`persist/apply.py`. Only after the commit are the new room snapshots published, stream positions
advanced and the typed rows announced on the stream bus (caches, indexes, the notifier and the
other consumers update there); then each caller gets its event. Per-room order is submission
order; global order is the stream ordering.

A batch whose transaction fails is split and retried without the failing unit (`_process_isolating`),
so one bad event never fails other users' events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from homeserver.core.clock import Clock
from homeserver.core.errors import DatabaseUnavailableError, MatrixError
from homeserver.core.streams import EventsRow, Stream
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events import constants as c
from homeserver.events.context import EventContext, EventKind
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.persist.apply import ContextApplier
from homeserver.persist.local import EventDraft, build_local_context
from homeserver.persist.metrics import persist_latency
from homeserver.persist.plan import BatchPlan, EventLookup, PersistedEvent
from homeserver.replication.bus import StreamBus
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.state.resolution import StateResolver, V2StateResolver
from homeserver.storage.batching import DeferredConnection
from homeserver.storage.database import Connection, Database
from homeserver.storage.engine import is_data_error
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.rooms import RoomStore
from homeserver.storage.stores.state import StateStore

__all__ = ["EventDraft", "EventPersister", "PersistedEvent"]

logger = logging.getLogger(__name__)

MAX_BATCH = 500


@dataclass(slots=True)
class _Unit:
    """Events that succeed or fail together (createRoom's initial events; one federation PDU)."""

    drafts: list[EventDraft]
    contexts: list[EventContext]
    new_room_version: RoomVersion | None
    future: asyncio.Future[list[PersistedEvent]]
    results: list[PersistedEvent] = field(default_factory=list)
    # A room learnt over federation (joined through another server, or an invite/knock in a room
    # this server is not in): (version, creator). Its `rooms` row is written if missing.
    remote_room: tuple[RoomVersion, str] | None = None


class _WriteFailed(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


BatchHook = Callable[[Connection, Sequence[PersistedEvent]], Awaitable[None]]


class EventPersister:
    def __init__(
        self,
        db: Database,
        events: EventStore,
        rooms: RoomStore,
        state: CurrentStateCache,
        clock: Clock,
        server_name: str,
        signing_key: ServerSigningKey,
        stream_start: int,
        *,
        bus: StreamBus,
        groups: StateStore,
        resolver: StateResolver | None = None,
    ) -> None:
        self.db = db
        self.events = events
        self.rooms = rooms
        self.state = state
        self.clock = clock
        self.server_name = server_name
        self.signing_key = signing_key
        self.bus = bus
        self.groups = groups
        self.resolver: StateResolver = resolver or V2StateResolver(groups)
        self._applier = ContextApplier(groups, self.resolver, clock)
        self._last_stream = stream_start
        self.current_stream = stream_start
        self._last_group: int | None = None  # loaded by the writer task
        self._last_backfill = 0
        self._queue: list[_Unit] = []
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        # in-transaction hooks (push actions, user directory, search index): live events only
        self.batch_hooks: list[BatchHook] = []
        # Called when a batch's transaction was rolled back (hooks that kept state for the commit).
        self.abort_hooks: list[Callable[[], None]] = []
        # Test seam: called with the batch's events inside the transaction, before the hooks.
        self.fault_injector: Callable[[Sequence[PersistedEvent]], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-persister")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._task is None:
            return
        await self._drained.wait()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    # -- API -------------------------------------------------------------------------------------

    async def send(
        self, drafts: list[EventDraft], *, new_room_version: RoomVersion | None = None
    ) -> list[PersistedEvent]:
        """Create, authorise and persist the drafts as one unit; raises if any is refused."""
        return await self._enqueue(_Unit(drafts, [], new_room_version, self._future()))

    async def send_one(self, draft: EventDraft) -> PersistedEvent:
        return (await self.send([draft]))[0]

    async def persist(self, contexts: list[EventContext]) -> list[PersistedEvent]:
        """Persist events built elsewhere (federation: received, outliers, backfill) as one unit.
        The rooms must exist."""
        return await self._enqueue(_Unit([], contexts, None, self._future()))

    async def persist_remote_room(
        self, room_version: RoomVersion, creator: str, contexts: list[EventContext]
    ) -> list[PersistedEvent]:
        """Like `persist`, for a room that may not exist here yet: a room joined through another
        server (the state and auth chain of the send_join response as outliers, then the join as
        REMOTE_NEW with that state before it), or an out-of-band membership (a received invite).
        The room's `rooms` row is written in the same transaction when it is missing; a room that
        exists is extended as by `persist`."""
        unit = _Unit([], contexts, None, self._future(), remote_room=(room_version, creator))
        return await self._enqueue(unit)

    @staticmethod
    def _future() -> asyncio.Future[list[PersistedEvent]]:
        return asyncio.get_running_loop().create_future()

    async def _enqueue(self, unit: _Unit) -> list[PersistedEvent]:
        if self._task is None:
            raise RuntimeError("event persister is not running")
        self._queue.append(unit)
        self._drained.clear()
        self._wake.set()
        # The caller may be cancelled (client went away); the unit is still persisted.
        started = time.perf_counter()
        result = await asyncio.shield(unit.future)
        persist_latency.observe(time.perf_counter() - started)
        return result

    # -- the writer loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._last_group is None:
                try:
                    await self._load_counters()
                except Exception as exc:
                    logger.exception("event persister could not load its counters")
                    batch, self._queue = self._queue, []
                    self._fail(batch, exc)
                    self._drained.set()
                    continue
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._process_isolating(batch)
                except Exception as exc:  # unexpected: fail every caller still waiting
                    logger.exception("persisting a batch of %d unit(s) failed", len(batch))
                    self._fail(batch, exc)
            self._drained.set()

    async def _load_counters(self) -> None:
        self._last_group = await self.groups.max_group_id()
        self._last_backfill = min(0, await self.events.min_stream_ordering())

    async def _process_isolating(self, batch: list[_Unit]) -> None:
        """Write the batch; if its transaction fails, write each half on its own, down to the one
        unit that fails, whose caller alone gets the error (nothing of a failed attempt was
        published, so every retry rebuilds from the committed snapshots)."""
        try:
            await self._process(batch)
        except _WriteFailed as failure:
            pending = [u for u in batch if not u.future.done()]
            # Losing the database is no one event's fault: halving would only wait for it again
            # per half. Everyone gets the 503 at once and retries.
            if len(pending) <= 1 or isinstance(failure.cause, DatabaseUnavailableError):
                logger.error("persisting an event failed: %r", failure.cause, exc_info=failure.cause)
                self._fail(pending, failure.cause)
                return
            logger.warning(
                "a batch of %d unit(s) failed (%r): retrying in halves", len(pending), failure.cause
            )
            half = len(pending) // 2
            await self._process_isolating(pending[:half])
            await self._process_isolating(pending[half:])

    @staticmethod
    def _fail(batch: list[_Unit], exc: BaseException) -> None:
        if isinstance(exc, MatrixError):
            error = exc
        elif is_data_error(exc):
            error = MatrixError(400, "M_BAD_JSON", "The event contains data that cannot be stored")
        else:
            error = MatrixError(500, "M_UNKNOWN", "Failed to persist event")
        for unit in batch:
            if not unit.future.done():
                unit.future.set_exception(error)

    async def _process(self, batch: list[_Unit]) -> None:
        working: dict[str, RoomSnapshot] = {}
        start_groups: dict[str, int | None] = {}
        accepted: list[_Unit] = []
        new_rooms: list[tuple[str, RoomVersion, str, int]] = []
        remote_rooms: list[tuple[str, RoomVersion, str, int]] = []
        plan = BatchPlan()
        pending_events: dict[str, Event] = {}
        stream = self._last_stream
        backfill = self._last_backfill
        assert self._last_group is not None
        group_id = self._last_group
        for unit in batch:
            if unit.future.done():
                continue
            trial = dict(working)
            trial_plan = BatchPlan()
            trial_stream, trial_backfill, trial_group = stream, backfill, group_id
            trial_events: dict[str, Event] = {}
            try:
                results = []
                items: list[EventDraft | EventContext] = [*unit.drafts, *unit.contexts]
                # v12+: a new room's id derives from its create event; the unit's drafts share a
                # provisional id until then.
                room_ids: dict[str, str] = {}
                for item in items:
                    if isinstance(item, EventDraft):
                        item.room_id = room_ids.get(item.room_id, item.room_id)
                    room_id = item.room_id if isinstance(item, EventDraft) else item.event.room_id
                    snapshot = trial.get(room_id)
                    if snapshot is None:
                        snapshot = await self._snapshot_for(item, unit)
                        start_groups.setdefault(room_id, snapshot.state_group)
                    if isinstance(item, EventDraft):
                        if snapshot.state_group is None and snapshot.state:
                            # A room from before state groups: its current state becomes one.
                            trial_group += 1
                            snapshot = self._applier.with_full_group(snapshot, trial_group, trial_plan)
                        ctx = build_local_context(
                            item,
                            snapshot,
                            origin_server_ts=(
                                item.origin_server_ts
                                if item.origin_server_ts is not None
                                else self.clock.time_ms()
                            ),
                            server_name=self.server_name,
                            signing_key=self.signing_key,
                        )
                    else:
                        ctx = item
                    if ctx.kind is EventKind.BACKFILLED:
                        trial_backfill -= 1
                        ordering = trial_backfill
                    else:
                        trial_stream += 1
                        ordering = trial_stream
                    # The event itself is visible to its own apply: a fork it creates is resolved
                    # with it in one of the state sets.
                    trial_events[ctx.event.event_id] = ctx.event
                    lookup = EventLookup(self.events, pending_events, trial_events)
                    result, snapshot, trial_group = await self._applier.apply(
                        ctx, snapshot, ordering, trial_group, trial_plan, lookup
                    )
                    if ctx.event.room_id != room_id:  # the create event fixed a v12 room id
                        room_ids[room_id] = ctx.event.room_id
                        start_groups.setdefault(ctx.event.room_id, start_groups.pop(room_id, None))
                        room_id = ctx.event.room_id
                    trial[room_id] = snapshot
                    results.append(result)
            except MatrixError as err:
                unit.future.set_exception(err)
                continue
            except Exception:
                logger.exception("building events failed")
                unit.future.set_exception(MatrixError(500, "M_UNKNOWN", "Failed to build event"))
                continue
            working, stream, backfill, group_id = trial, trial_stream, trial_backfill, trial_group
            plan.extend(trial_plan)
            pending_events.update(trial_events)
            unit.results = results
            accepted.append(unit)
            if unit.new_room_version is not None:
                create = results[0].event
                new_rooms.append(
                    (create.room_id, unit.new_room_version, create.sender, create.origin_server_ts)
                )
            if unit.remote_room is not None and results:
                first = results[0].event
                remote_rooms.append(
                    (first.room_id, unit.remote_room[0], unit.remote_room[1], self.clock.time_ms())
                )
        if not accepted:
            return

        persisted = [p for unit in accepted for p in unit.results]
        changed_groups = {
            room_id: s.state_group for room_id, s in working.items() if s.state_group != start_groups[room_id]
        }
        try:
            await self._write(persisted, new_rooms, working, changed_groups, plan, remote_rooms)
        except Exception as exc:
            for abort in self.abort_hooks:
                abort()
            raise _WriteFailed(exc) from exc
        self._last_stream = stream
        self._last_backfill = backfill
        self._last_group = group_id
        self._publish(persisted, working, stream)
        for unit in accepted:
            unit.future.set_result(unit.results)

    def _publish(
        self, persisted: list[PersistedEvent], working: dict[str, RoomSnapshot], stream: int
    ) -> None:
        """After the commit: snapshots, the event cache, the stream position, then the bus."""
        for snapshot in working.values():
            self.state.publish(snapshot)
        rows: list[EventsRow] = []
        for p in persisted:
            event = p.event
            ctx = p.context
            replaced = (
                p.state_before.state.get((event.type, event.state_key))
                if event.state_key is not None
                else None
            )
            self.events.cache_new(
                StoredEvent(
                    event,
                    p.stream_ordering,
                    None,
                    outlier=ctx is not None and ctx.is_outlier,
                    replaces_state=replaced.event_id if replaced else None,
                )
            )
            redacts = event.redacts
            if redacts is not None and p.is_live:
                self.events.invalidate(redacts)
            if ctx is not None and ctx.kind is EventKind.BACKFILLED:
                continue  # history, not news: no row on the events stream
            rows.append(
                EventsRow(
                    p.stream_ordering,
                    event.room_id,
                    event.event_id,
                    event.type,
                    event.state_key,
                    event.sender,
                    str(event.content.get("membership")) if event.type == c.MEMBER else None,
                    redacts,
                    outlier=ctx is not None and ctx.is_outlier,
                    rejected=ctx is not None and ctx.rejected_reason is not None,
                    soft_failed=ctx is not None and ctx.soft_failed,
                    device_id=p.txn[1] if p.txn is not None else None,
                    txn_id=p.txn[2] if p.txn is not None else None,
                    out_of_band=ctx is not None and ctx.out_of_band_membership,
                )
            )
        self.current_stream = stream
        self.bus.publish(Stream.EVENTS, stream, rows)

    async def _snapshot_for(self, item: EventDraft | EventContext, unit: _Unit) -> RoomSnapshot:
        room_id = item.room_id if isinstance(item, EventDraft) else item.event.room_id
        snapshot = await self.state.get(room_id)
        if snapshot is not None:
            return snapshot
        if unit.new_room_version is not None and isinstance(item, EventDraft) and item.type == c.CREATE:
            return RoomSnapshot(room_id, unit.new_room_version, {}, (), 0, 0, {})
        if unit.remote_room is not None:
            return RoomSnapshot(room_id, unit.remote_room[0], {}, (), 0, 0, {})
        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")

    # -- one event -------------------------------------------------------------------------------
    # -- the transaction -------------------------------------------------------------------------

    async def _write(
        self,
        persisted: list[PersistedEvent],
        new_rooms: list[tuple[str, RoomVersion, str, int]],
        working: dict[str, RoomSnapshot],
        changed_groups: dict[str, int | None],
        plan: BatchPlan,
        remote_rooms: Sequence[tuple[str, RoomVersion, str, int]] = (),
    ) -> None:
        live = [p for p in persisted if p.is_live]
        async with self.db.transaction() as txn:
            # Every write of the batch goes to the engine in one call (storage/batching.py).
            conn = DeferredConnection(txn)
            for room_id, version, creator, ts in new_rooms:
                await self.rooms.insert_room_txn(conn, room_id, version.identifier, creator, ts)
            for room_id, version, creator, ts in remote_rooms:
                await self.rooms.insert_room_if_missing_txn(conn, room_id, version.identifier, creator, ts)
            await self.events.insert_events_txn(conn, plan.events)
            if plan.txn_ids:
                await self.events.insert_txn_ids_txn(conn, plan.txn_ids)
            await self.groups.insert_groups_txn(conn, plan.groups)
            await self.groups.insert_event_state_txn(conn, plan.event_state)
            await self.groups.insert_edges_txn(conn, plan.edges, plan.auth_edges)
            if plan.current_state:
                await self.rooms.upsert_current_state_txn(conn, plan.current_state)
            if plan.removed_state:
                await self.rooms.delete_current_state_txn(conn, plan.removed_state)
            if plan.deltas:
                await self.rooms.insert_state_deltas_txn(conn, plan.deltas)
            if plan.members:
                await self.rooms.upsert_memberships_txn(conn, plan.members)
            for target, redaction_id in plan.redactions:
                await self.events.set_redacted_by_txn(conn, target, redaction_id)
            for room_id, snapshot in working.items():
                await self.rooms.set_forward_extremities_txn(conn, room_id, snapshot.extremities)
            for room_id, group in changed_groups.items():
                await self.groups.set_current_group_txn(conn, room_id, group)
            if self.fault_injector is not None:
                self.fault_injector(persisted)
            if live:
                for hook in self.batch_hooks:
                    await hook(conn, live)
            await conn.flush()
