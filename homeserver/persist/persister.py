"""The event persister: the one writer of events, the DAG, the state at each event, the forward
extremities and the current state.

Every event reaches it as an `EventContext` (events/context.py): local drafts are built into one
inside the writer loop (`persist/local.py`, on the room's latest snapshot), federation hands in
contexts it built after verification. One background task takes every queued unit and writes the
whole batch in ONE transaction (group commit): events, edges, state groups and the state before
and after each event, forward extremities ((old - prev_events) + event, for events that change the
room), the current state (resolved when the room forks, `state/resolution.py`), and the in-
transaction hooks (push actions, user directory, search index). Only after the commit are the new
room snapshots published, stream positions advanced and the typed rows announced on the stream
bus (caches, indexes, the notifier and the other consumers update there); then each caller gets its
event. Per-room order is submission order; global order is the stream ordering.

A batch whose transaction fails is split and retried without the failing unit (`_process_isolating`),
so one bad event never fails other users' events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from homeserver.core import json as hjson
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.core.streams import EventsRow, Stream
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events import constants as c
from homeserver.events.context import EventContext, EventKind, StateIds
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.persist.local import EventDraft, build_local_context
from homeserver.replication.bus import StreamBus
from homeserver.state.current import CurrentStateCache, RoomSnapshot, StateKey
from homeserver.state.resolution import PlaceholderStateResolver, StateResolver, merge_unconflicted
from homeserver.storage.batching import DeferredConnection
from homeserver.storage.database import Connection, Database
from homeserver.storage.engine import is_data_error
from homeserver.storage.stores.events import EventStore, NewEventRow, StoredEvent, relation_of
from homeserver.storage.stores.rooms import Membership, RoomStore
from homeserver.storage.stores.state import EventStateRow, NewStateGroup, StateStore

__all__ = ["EventDraft", "EventPersister", "PersistedEvent"]

logger = logging.getLogger(__name__)

MAX_BATCH = 500
# A state group is written as a delta on the previous one at most this many times in a row, then
# in full: reading any state stays one bounded query.
MAX_GROUP_HOPS = 100


@dataclass(frozen=True, slots=True)
class PersistedEvent:
    event: Event
    stream_ordering: int
    # The room state before this event (for push rules, notifications, visibility decisions).
    state_before: RoomSnapshot
    # (user_id, device_id, txn_id) of an idempotent client send.
    txn: tuple[str, str, str] | None = None
    context: EventContext | None = None

    @property
    def is_live(self) -> bool:
        """A new timeline event (not an outlier, backfilled, rejected or soft-failed one)."""
        return self.context is None or self.context.changes_room


@dataclass(slots=True)
class _Unit:
    """Events that succeed or fail together (createRoom's initial events; one federation PDU)."""

    drafts: list[EventDraft]
    contexts: list[EventContext]
    new_room_version: RoomVersion | None
    future: asyncio.Future[list[PersistedEvent]]
    results: list[PersistedEvent] = field(default_factory=list)


@dataclass(slots=True)
class _Plan:
    """Rows one batch writes (besides the per-room extremities and current groups)."""

    events: list[NewEventRow] = field(default_factory=list)
    txn_ids: list[tuple[str, str, str, str, str, str, int]] = field(default_factory=list)
    current_state: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    removed_state: list[tuple[str, str, str]] = field(default_factory=list)
    deltas: list[tuple[int, str, str, str, str | None, str | None]] = field(default_factory=list)
    members: list[Membership] = field(default_factory=list)
    redactions: list[tuple[str, str]] = field(default_factory=list)
    groups: list[NewStateGroup] = field(default_factory=list)
    event_state: list[EventStateRow] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    auth_edges: list[tuple[str, str, str]] = field(default_factory=list)

    def extend(self, other: _Plan) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


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
        # PLACEHOLDER until federation brings state resolution v2 (see state/resolution.py).
        self.resolver: StateResolver = resolver or PlaceholderStateResolver()
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
        return await asyncio.shield(unit.future)

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
        low = await self.db.fetchval("SELECT COALESCE(MIN(stream_ordering), 0) FROM events")
        self._last_backfill = min(0, int(low or 0))

    async def _process_isolating(self, batch: list[_Unit]) -> None:
        """Write the batch; if its transaction fails, write each half on its own, down to the one
        unit that fails, whose caller alone gets the error (nothing of a failed attempt was
        published, so every retry rebuilds from the committed snapshots)."""
        try:
            await self._process(batch)
        except _WriteFailed as failure:
            pending = [u for u in batch if not u.future.done()]
            if len(pending) <= 1:
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
        plan = _Plan()
        pending_events: dict[str, Event] = {}
        stream = self._last_stream
        backfill = self._last_backfill
        assert self._last_group is not None
        group_id = self._last_group
        for unit in batch:
            if unit.future.done():
                continue
            trial = dict(working)
            trial_plan = _Plan()
            trial_stream, trial_backfill, trial_group = stream, backfill, group_id
            trial_events: dict[str, Event] = {}
            try:
                results = []
                items: list[EventDraft | EventContext] = [*unit.drafts, *unit.contexts]
                for item in items:
                    room_id = item.room_id if isinstance(item, EventDraft) else item.event.room_id
                    snapshot = trial.get(room_id)
                    if snapshot is None:
                        snapshot = await self._snapshot_for(item, unit)
                        start_groups.setdefault(room_id, snapshot.state_group)
                    if isinstance(item, EventDraft):
                        if snapshot.state_group is None and snapshot.state:
                            # A room from before state groups: its current state becomes one.
                            trial_group += 1
                            snapshot = self._with_full_group(snapshot, trial_group, trial_plan)
                        ctx = build_local_context(
                            item,
                            snapshot,
                            origin_server_ts=self.clock.time_ms(),
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
                    lookup = _Lookup(self.events, pending_events, trial_events)
                    result, snapshot, trial_group = await self._apply(
                        ctx, snapshot, ordering, trial_group, trial_plan, lookup
                    )
                    trial_events[ctx.event.event_id] = ctx.event
                    trial[room_id] = snapshot
                    results.append(result)
            except MatrixError as err:
                unit.future.set_exception(err)
                continue
            except Exception as exc:
                logger.exception("building events failed")
                unit.future.set_exception(MatrixError(500, "M_UNKNOWN", f"Failed to build event: {exc}"))
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
        if not accepted:
            return

        persisted = [p for unit in accepted for p in unit.results]
        changed_groups = {
            room_id: s.state_group for room_id, s in working.items() if s.state_group != start_groups[room_id]
        }
        try:
            await self._write(persisted, new_rooms, working, changed_groups, plan)
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
        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")

    # -- one event -------------------------------------------------------------------------------

    @staticmethod
    def _with_full_group(snapshot: RoomSnapshot, group: int, plan: _Plan) -> RoomSnapshot:
        delta: dict[StateKey, str | None] = {k: e.event_id for k, e in snapshot.state.items()}
        plan.groups.append(NewStateGroup(group, snapshot.room_id, None, 0, delta))
        return replace(snapshot, state_group=group, group_hops=0)

    @staticmethod
    def _new_group(
        room_id: str,
        group: int,
        prev: int | None,
        prev_hops: int,
        delta: dict[StateKey, str | None],
        full: Callable[[], Mapping[StateKey, str]],
        plan: _Plan,
    ) -> int:
        """Write state group `group` as a delta on `prev`, or in full when the chain is long;
        returns its hop count."""
        if prev is not None and prev_hops < MAX_GROUP_HOPS:
            plan.groups.append(NewStateGroup(group, room_id, prev, prev_hops + 1, delta))
            return prev_hops + 1
        plan.groups.append(NewStateGroup(group, room_id, None, 0, dict(full())))
        return 0

    async def _apply(
        self,
        ctx: EventContext,
        snapshot: RoomSnapshot,
        ordering: int,
        group_id: int,
        plan: _Plan,
        lookup: _Lookup,
    ) -> tuple[PersistedEvent, RoomSnapshot, int]:
        """Plan the rows for one event and return the room's snapshot after it."""
        event = ctx.event
        room_id = event.room_id
        event_id = event.event_id
        key = (event.type, event.state_key) if event.state_key is not None else None
        plan.auth_edges.extend((event_id, a, room_id) for a in event.auth_event_ids)
        if ctx.is_outlier:
            plan.events.append(self._event_row(ctx, ordering, None))
            return PersistedEvent(event, ordering, snapshot, None, ctx), snapshot, group_id

        plan.edges.extend((event_id, prev, room_id) for prev in event.prev_event_ids)
        # Built on the room's current state (every local event; a remote one when federation
        # found its state before to be the current one): no comparison, no new "before" group.
        on_current = ctx.state_group_before == snapshot.state_group and (
            snapshot.state_group is not None or not snapshot.state
        )
        if on_current:
            before_group, before_hops = snapshot.state_group, snapshot.group_hops
            state_before = snapshot
        else:
            group_id += 1
            before_group = group_id
            before_hops = self._group_before(ctx, snapshot, group_id, plan)
            state_before = await self._snapshot_of(snapshot, ctx.state_before, lookup)

        after_group, after_hops = before_group, before_hops
        if key is not None and ctx.state_after_own_key:
            group_id += 1
            after_group = group_id
            after_hops = self._new_group(
                room_id,
                group_id,
                before_group,
                before_hops,
                {key: event_id},
                lambda: {**StateIds(state_before.state), key: event_id},
                plan,
            )
        plan.event_state.append(EventStateRow(event_id, room_id, before_group, after_group))
        replaced = ctx.state_before.get(key) if key is not None else None
        plan.events.append(self._event_row(ctx, ordering, replaced))
        txn = ctx.txn
        if txn is not None:
            plan.txn_ids.append((txn[0], txn[1], room_id, event.type, txn[2], event_id, self.clock.time_ms()))
        persisted = PersistedEvent(event, ordering, state_before, txn, ctx)
        if not ctx.changes_room:
            return persisted, snapshot, group_id
        if event.redacts is not None:
            plan.redactions.append((event.redacts, event_id))

        prevs = set(event.prev_event_ids)
        extremities = (*(e for e in snapshot.extremities if e not in prevs), event_id)
        if on_current and len(extremities) == 1:
            # The common case: the event extends the room's only tip with the current state.
            changes: dict[StateKey, str | None] = {key: event_id} if key is not None else {}
            new_state: Mapping[StateKey, Event] = snapshot.state
            if key is not None:
                new_state = {**snapshot.state, key: event}
            forks = None
            current_group, current_hops = after_group, after_hops
        else:
            after_ids: dict[StateKey, str] = dict(ctx.state_before)
            if key is not None and ctx.state_after_own_key:
                after_ids[key] = event_id
            resolved, forks = await self._resolve(snapshot, extremities, event_id, after_ids, lookup)
            current = StateIds(snapshot.state)
            changes = {k: v for k, v in resolved.items() if current.get(k) != v}
            changes.update({k: None for k in current if k not in resolved})
            needed = [v for v in changes.values() if v is not None and v != event_id]
            found = await lookup.get(needed)
            new_state = dict(snapshot.state)
            for k, v in changes.items():
                if v is None:
                    new_state.pop(k, None)
                elif v == event_id:
                    new_state[k] = event
                else:
                    new_state[k] = found[v]
            if resolved == after_ids:
                current_group, current_hops = after_group, after_hops
            else:
                group_id += 1
                current_group = group_id
                delta: dict[StateKey, str | None] = {
                    k: v for k, v in resolved.items() if after_ids.get(k) != v
                }
                delta.update({k: None for k in after_ids if k not in resolved})
                current_hops = self._new_group(
                    room_id, group_id, after_group, after_hops, delta, lambda: resolved, plan
                )

        memberships = snapshot.memberships
        for k, v in changes.items():
            prev_event = snapshot.state.get(k)
            prev_id = prev_event.event_id if prev_event is not None else None
            plan.deltas.append((ordering, room_id, k[0], k[1], v, prev_id))
            if v is None:
                plan.removed_state.append((room_id, k[0], k[1]))
            else:
                plan.current_state.append((room_id, k[0], k[1], v, ordering))
            if k[0] == c.MEMBER:
                if memberships is snapshot.memberships:
                    memberships = dict(memberships)
                assert isinstance(memberships, dict)
                member = new_state.get(k)
                if member is None:
                    memberships.pop(k[1], None)
                else:
                    memberships[k[1]] = str(member.content.get("membership"))
                    plan.members.append(_membership_row(member, ordering))
        new_snapshot = RoomSnapshot(
            room_id,
            snapshot.version,
            new_state,
            extremities,
            max(snapshot.depth, event.depth),
            ordering,
            memberships,
            current_group,
            current_hops,
            forks,
        )
        return persisted, new_snapshot, group_id

    def _group_before(self, ctx: EventContext, snapshot: RoomSnapshot, group: int, plan: _Plan) -> int:
        """Store `ctx.state_before` as group `group` (a delta on the room's current group when it
        has one); returns its hop count."""
        before = ctx.state_before
        if snapshot.state_group is None:
            plan.groups.append(NewStateGroup(group, snapshot.room_id, None, 0, dict(before)))
            return 0
        current = StateIds(snapshot.state)
        delta: dict[StateKey, str | None] = {k: v for k, v in before.items() if current.get(k) != v}
        delta.update({k: None for k in current if k not in before})
        return self._new_group(
            snapshot.room_id, group, snapshot.state_group, snapshot.group_hops, delta, lambda: before, plan
        )

    async def _snapshot_of(
        self, snapshot: RoomSnapshot, state_ids: Mapping[StateKey, str], lookup: _Lookup
    ) -> RoomSnapshot:
        """A snapshot of another state of the room (the state before a remote event)."""
        found = await lookup.get(list(state_ids.values()))
        state = {k: found[v] for k, v in state_ids.items() if v in found}
        memberships = {k[1]: str(e.content.get("membership")) for k, e in state.items() if k[0] == c.MEMBER}
        return RoomSnapshot(
            snapshot.room_id,
            snapshot.version,
            state,
            snapshot.extremities,
            snapshot.depth,
            snapshot.last_stream,
            memberships,
        )

    async def _resolve(
        self,
        snapshot: RoomSnapshot,
        extremities: tuple[str, ...],
        event_id: str,
        after_ids: dict[StateKey, str],
        lookup: _Lookup,
    ) -> tuple[dict[StateKey, str], dict[str, Mapping[StateKey, str]] | None]:
        """The current state over the new extremities, and the per-extremity states to keep."""
        if len(extremities) == 1:
            return after_ids, None
        sets: dict[str, Mapping[StateKey, str]] = {}
        for extremity in extremities:
            if extremity == event_id:
                sets[extremity] = after_ids
            elif snapshot.forks is not None and extremity in snapshot.forks:
                sets[extremity] = snapshot.forks[extremity]
            elif snapshot.forks is None and snapshot.extremities == (extremity,):
                sets[extremity] = StateIds(snapshot.state)  # a linear room's tip: its current state
            else:
                rows = await self.groups.get_event_groups([extremity])
                row = rows.get(extremity)
                if row is None:  # stored before state groups: the current state stands in
                    sets[extremity] = StateIds(snapshot.state)
                else:
                    sets[extremity] = await self.groups.get_group_state(row.after_group)
        state_sets = list(sets.values())
        merged = merge_unconflicted(state_sets)
        if merged is None:
            merged = await self.resolver.resolve(snapshot.version, snapshot.room_id, state_sets, lookup.get)
        return merged, sets

    def _event_row(self, ctx: EventContext, ordering: int, replaced: str | None) -> NewEventRow:
        event = ctx.event
        relates_to, rel_type = relation_of(event)
        url = event.content.get("url")
        return NewEventRow(
            event,
            ordering,
            hjson.dumps_str(event.pdu),
            isinstance(url, str),
            relates_to,
            rel_type,
            replaced,
            outlier=ctx.is_outlier,
            rejected_reason=ctx.rejected_reason,
            soft_failed=ctx.soft_failed,
        )

    # -- the transaction -------------------------------------------------------------------------

    async def _write(
        self,
        persisted: list[PersistedEvent],
        new_rooms: list[tuple[str, RoomVersion, str, int]],
        working: dict[str, RoomSnapshot],
        changed_groups: dict[str, int | None],
        plan: _Plan,
    ) -> None:
        live = [p for p in persisted if p.is_live]
        async with self.db.transaction() as txn:
            # Every write of the batch goes to the engine in one call (storage/batching.py).
            conn = DeferredConnection(txn)
            for room_id, version, creator, ts in new_rooms:
                await self.rooms.insert_room_txn(conn, room_id, version.identifier, creator, ts)
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


class _Lookup:
    """Events by id for the writer: this batch's uncommitted events first, then the store."""

    __slots__ = ("events", "layers")

    def __init__(self, events: EventStore, *layers: Mapping[str, Event]) -> None:
        self.events = events
        self.layers = layers

    async def get(self, event_ids: Sequence[str]) -> dict[str, Event]:
        found: dict[str, Event] = {}
        missing = []
        for event_id in event_ids:
            for layer in self.layers:
                event = layer.get(event_id)
                if event is not None:
                    found[event_id] = event
                    break
            else:
                missing.append(event_id)
        if missing:
            for event_id, stored in (await self.events.get_events(missing)).items():
                found[event_id] = stored.event
        return found


def _membership_row(event: Event, ordering: int) -> Membership:
    content = event.content
    displayname = content.get("displayname")
    avatar = content.get("avatar_url")
    return Membership(
        event.room_id,
        event.state_key or "",
        str(content.get("membership")),
        event.event_id,
        ordering,
        event.sender,
        displayname if isinstance(displayname, str) else None,
        avatar if isinstance(avatar, str) else None,
    )
