"""The event persister: builds, authorises and commits room events in batches.

All local event creation funnels through one background task. It takes every queued draft,
builds each on top of its room's latest snapshot (prev_events = forward extremities, auth events
from current state, depth), checks the auth rules, and writes the whole batch in ONE transaction
(group commit). Only after the commit are the new room snapshots published, stream positions
advanced, and waiters woken; then each caller gets its event. Per-room order is submission order;
global order is the stream ordering.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.core import json as hjson
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.crypto.keys import ServerSigningKey
from homeserver.events import constants as c
from homeserver.events.auth import auth_types_for_event, check_auth_rules
from homeserver.events.builder import build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.validation import validate_pdu_size_and_fields
from homeserver.persist.metrics import persist_latency
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.storage.database import Connection, Database
from homeserver.storage.stores.events import EventStore, NewEventRow, StoredEvent, relation_of
from homeserver.storage.stores.rooms import Membership, RoomStore

logger = logging.getLogger(__name__)

MAX_BATCH = 500


@dataclass(slots=True)
class EventDraft:
    """A local event to create. `txn` = (user_id, device_id, txn_id) for idempotent sends."""

    room_id: str
    type: str
    sender: str
    content: dict[str, Any]
    state_key: str | None = None
    redacts: str | None = None
    txn: tuple[str, str, str] | None = None
    unsigned_extra: dict[str, Any] | None = None
    # Extra check run against the room snapshot just before building (e.g. "must still be joined").
    precondition: Callable[[RoomSnapshot], None] | None = None
    # An appservice's `?ts=` (timestamp massaging); None: now.
    origin_server_ts: int | None = None


@dataclass(frozen=True, slots=True)
class PersistedEvent:
    event: Event
    stream_ordering: int
    # The room state before this event (for push rules, notifications, visibility decisions).
    state_before: RoomSnapshot
    # (user_id, device_id, txn_id) of an idempotent client send.
    txn: tuple[str, str, str] | None = None


@dataclass(slots=True)
class _Unit:
    """Drafts that succeed or fail together (createRoom's initial events)."""

    drafts: list[EventDraft]
    new_room_version: RoomVersion | None
    future: asyncio.Future[list[PersistedEvent]]
    results: list[PersistedEvent] = field(default_factory=list)


BatchHook = Callable[[Connection, Sequence[PersistedEvent]], Awaitable[None]]
CommitHook = Callable[[Sequence[PersistedEvent]], None]


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
    ) -> None:
        self.db = db
        self.events = events
        self.rooms = rooms
        self.state = state
        self.clock = clock
        self.server_name = server_name
        self.signing_key = signing_key
        self._last_stream = stream_start
        self.current_stream = stream_start
        self._queue: list[_Unit] = []
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        # in-transaction hooks (push actions, counters) and post-commit hooks (notifier, caches)
        self.batch_hooks: list[BatchHook] = []
        self.commit_hooks: list[CommitHook] = []

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
        if self._task is None:
            raise RuntimeError("event persister is not running")
        fut: asyncio.Future[list[PersistedEvent]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Unit(drafts, new_room_version, fut))
        self._drained.clear()
        self._wake.set()
        # The caller may be cancelled (client went away); the unit is still persisted.
        started = time.perf_counter()
        result = await asyncio.shield(fut)
        persist_latency.observe(time.perf_counter() - started)
        return result

    async def send_one(self, draft: EventDraft) -> PersistedEvent:
        return (await self.send([draft]))[0]

    # -- the writer loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._process(batch)
                except Exception as exc:  # the batch failed as a whole: fail every caller
                    logger.exception("persisting a batch of %d unit(s) failed", len(batch))
                    self._fail(batch, exc)
            self._drained.set()

    @staticmethod
    def _fail(batch: list[_Unit], exc: Exception) -> None:
        error = (
            exc if isinstance(exc, MatrixError) else MatrixError(500, "M_UNKNOWN", "Failed to persist event")
        )
        for unit in batch:
            if not unit.future.done():
                unit.future.set_exception(error)

    async def _process(self, batch: list[_Unit]) -> None:
        working: dict[str, RoomSnapshot] = {}
        accepted: list[_Unit] = []
        new_rooms: list[tuple[str, RoomVersion, str, int]] = []
        stream = self._last_stream
        for unit in batch:
            trial = dict(working)
            trial_stream = stream
            try:
                results = []
                for draft in unit.drafts:
                    snapshot = trial.get(draft.room_id) or await self._snapshot_for(draft, unit)
                    trial_stream += 1
                    built, new_snapshot = self._build_one(draft, snapshot, trial_stream)
                    trial[draft.room_id] = new_snapshot
                    results.append(built)
            except MatrixError as err:
                unit.future.set_exception(err)
                continue
            except Exception:
                logger.exception("building events failed")
                unit.future.set_exception(MatrixError(500, "M_UNKNOWN", "Failed to build event"))
                continue
            working, stream = trial, trial_stream
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
        await self._write(persisted, new_rooms, working)
        self._last_stream = stream
        # Publish: snapshots, caches, stream position, then wake everyone.
        for snapshot in working.values():
            self.state.publish(snapshot)
        for p in persisted:
            event = p.event
            replaced = (
                p.state_before.state.get((event.type, event.state_key))
                if event.state_key is not None
                else None
            )
            self.events.cache_new(
                StoredEvent(
                    event, p.stream_ordering, None, replaces_state=replaced.event_id if replaced else None
                )
            )
            redacts = p.event.redacts
            if redacts is not None:
                self.events.invalidate(redacts)
        self.current_stream = stream
        for hook in self.commit_hooks:
            try:
                hook(persisted)
            except Exception:
                logger.exception("post-commit hook failed")
        for unit in accepted:
            unit.future.set_result(unit.results)

    async def _snapshot_for(self, draft: EventDraft, unit: _Unit) -> RoomSnapshot:
        snapshot = await self.state.get(draft.room_id)
        if snapshot is not None:
            return snapshot
        if unit.new_room_version is not None and draft.type == c.CREATE:
            return RoomSnapshot(draft.room_id, unit.new_room_version, {}, (), 0, 0, {})
        raise MatrixError(404, "M_NOT_FOUND", "Unknown room")

    def _build_one(
        self, draft: EventDraft, snapshot: RoomSnapshot, stream_ordering: int
    ) -> tuple[PersistedEvent, RoomSnapshot]:
        if draft.precondition is not None:
            draft.precondition(snapshot)
        version = snapshot.version
        auth_keys = auth_types_for_event(
            version, type=draft.type, sender=draft.sender, state_key=draft.state_key, content=draft.content
        )
        auth_state = {k: snapshot.state[k] for k in auth_keys if k in snapshot.state}
        event = build_event(
            version,
            room_id=draft.room_id,
            sender=draft.sender,
            type=draft.type,
            content=draft.content,
            state_key=draft.state_key,
            prev_event_ids=list(snapshot.extremities),
            auth_event_ids=[e.event_id for e in auth_state.values()],
            depth=snapshot.depth + 1,
            origin_server_ts=(
                draft.origin_server_ts if draft.origin_server_ts is not None else self.clock.time_ms()
            ),
            server_name=self.server_name,
            signing_key=self.signing_key,
            redacts=draft.redacts,
            unsigned_extra=draft.unsigned_extra,
        )
        validate_pdu_size_and_fields(event.pdu)
        check_auth_rules(version, event, auth_state)

        state = snapshot.state
        memberships = snapshot.memberships
        if event.state_key is not None:
            state = dict(state)
            state[(event.type, event.state_key)] = event
            if event.type == c.MEMBER:
                memberships = dict(memberships)
                memberships[event.state_key] = str(event.content.get("membership"))
        new_snapshot = RoomSnapshot(
            snapshot.room_id, version, state, (event.event_id,), event.depth, stream_ordering, memberships
        )
        return PersistedEvent(event, stream_ordering, snapshot, draft.txn), new_snapshot

    async def _write(
        self,
        persisted: list[PersistedEvent],
        new_rooms: list[tuple[str, RoomVersion, str, int]],
        working: dict[str, RoomSnapshot],
    ) -> None:
        rows = []
        txn_rows = []
        state_rows = []
        delta_rows = []
        member_rows = []
        redactions = []
        now = self.clock.time_ms()
        for p in persisted:
            event = p.event
            relates_to, rel_type = relation_of(event)
            url = event.content.get("url")
            replaced = (
                p.state_before.state.get((event.type, event.state_key))
                if event.state_key is not None
                else None
            )
            rows.append(
                NewEventRow(
                    event,
                    p.stream_ordering,
                    hjson.dumps_str(event.pdu),
                    isinstance(url, str),
                    relates_to,
                    rel_type,
                    replaced.event_id if replaced is not None else None,
                )
            )
            txn = p.txn
            if txn is not None:
                txn_rows.append((txn[0], txn[1], event.room_id, event.type, txn[2], event.event_id, now))
            if event.state_key is not None:
                prev = p.state_before.state.get((event.type, event.state_key))
                state_rows.append(
                    (event.room_id, event.type, event.state_key, event.event_id, p.stream_ordering)
                )
                delta_rows.append(
                    (
                        p.stream_ordering,
                        event.room_id,
                        event.type,
                        event.state_key,
                        event.event_id,
                        prev.event_id if prev is not None else None,
                    )
                )
                if event.type == c.MEMBER:
                    content = event.content
                    displayname = content.get("displayname")
                    avatar = content.get("avatar_url")
                    member_rows.append(
                        Membership(
                            event.room_id,
                            event.state_key,
                            str(content.get("membership")),
                            event.event_id,
                            p.stream_ordering,
                            event.sender,
                            displayname if isinstance(displayname, str) else None,
                            avatar if isinstance(avatar, str) else None,
                        )
                    )
            if event.redacts is not None:
                redactions.append((event.redacts, event.event_id))

        async with self.db.transaction() as conn:
            for room_id, version, creator, ts in new_rooms:
                await self.rooms.insert_room_txn(conn, room_id, version.identifier, creator, ts)
            await self.events.insert_events_txn(conn, rows)
            if txn_rows:
                await self.events.insert_txn_ids_txn(conn, txn_rows)
            if state_rows:
                await self.rooms.upsert_current_state_txn(conn, state_rows)
                await self.rooms.insert_state_deltas_txn(conn, delta_rows)
            if member_rows:
                await self.rooms.upsert_memberships_txn(conn, member_rows)
            for target, redaction_id in redactions:
                await self.events.set_redacted_by_txn(conn, target, redaction_id)
            for room_id, snapshot in working.items():
                await self.rooms.set_forward_extremities_txn(conn, room_id, snapshot.extremities)
            for hook in self.batch_hooks:
                await hook(conn, persisted)
