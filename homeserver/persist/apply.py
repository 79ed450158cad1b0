"""Applying one `EventContext` to a room: the rows the persister writes for it and the room's
snapshot after it.

This is where the pipeline's rules live: the state before and after each event as state groups,
the DAG's edges and the auth-chain index, forward extremities = (old - prev_events) + event for
events that change the room, and the current state — extended in the common case, merged or
resolved (`state/resolution.py`) when the room forks. No I/O on the common path; reads only for
forks and remote events whose state is not the current one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from homeserver.core import json as hjson
from homeserver.core.clock import Clock
from homeserver.events import constants as c
from homeserver.events.context import EventContext, EventKind, StateIds
from homeserver.events.event import Event
from homeserver.persist.plan import BatchPlan, EventLookup, PersistedEvent, membership_row
from homeserver.state.current import RoomSnapshot, StateKey
from homeserver.state.resolution import StateResolver, merge_unconflicted
from homeserver.storage.stores.events import NewEventRow, relation_of
from homeserver.storage.stores.state import EventStateRow, NewStateGroup, StateStore

# A state group is written as a delta on the previous one at most this many times in a row, then
# in full: reading any state stays one bounded query.
MAX_GROUP_HOPS = 100


class ContextApplier:
    def __init__(self, groups: StateStore, resolver: StateResolver, clock: Clock) -> None:
        self.groups = groups
        self.resolver = resolver
        self.clock = clock

    @staticmethod
    def with_full_group(snapshot: RoomSnapshot, group: int, plan: BatchPlan) -> RoomSnapshot:
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
        plan: BatchPlan,
    ) -> int:
        """Write state group `group` as a delta on `prev`, or in full when the chain is long;
        returns its hop count."""
        if prev is not None and prev_hops < MAX_GROUP_HOPS:
            plan.groups.append(NewStateGroup(group, room_id, prev, prev_hops + 1, delta))
            return prev_hops + 1
        plan.groups.append(NewStateGroup(group, room_id, None, 0, dict(full())))
        return 0

    async def apply(
        self,
        ctx: EventContext,
        snapshot: RoomSnapshot,
        ordering: int,
        group_id: int,
        plan: BatchPlan,
        lookup: EventLookup,
    ) -> tuple[PersistedEvent, RoomSnapshot, int]:
        """Plan the rows for one event and return the room's snapshot after it."""
        event = ctx.event
        room_id = event.room_id
        event_id = event.event_id
        key = (event.type, event.state_key) if event.state_key is not None else None
        if not ctx.replaces_outlier:  # an outlier's auth edges are stored already
            plan.auth_edges.extend((event_id, a, room_id) for a in event.auth_event_ids)
        if ctx.is_outlier:
            plan.events.append(self._event_row(ctx, ordering, None))
            if ctx.out_of_band_membership and event.type == c.MEMBER:
                plan.members.append(membership_row(event, ordering))
            return PersistedEvent(event, ordering, snapshot, None, ctx), snapshot, group_id

        plan.edges.extend((event_id, prev, room_id) for prev in event.prev_event_ids)
        # Built on the room's current state (every local event; a remote one when federation
        # found its state before to be the current one): no comparison, no new "before" group.
        # (A room without a state group is new: its create event starts from the empty state; the
        # first event of a room joined over federation brings the state it was received with.)
        on_current = ctx.state_group_before == snapshot.state_group and (
            snapshot.state_group is not None or (not snapshot.state and not ctx.state_before)
        )
        delta_before: dict[StateKey, str | None] | None = None
        if not on_current and snapshot.state_group is not None:
            delta_before = _difference(StateIds(snapshot.state), ctx.state_before)
            on_current = not delta_before  # the same state as the current one: reuse its group
        if on_current:
            before_group, before_hops = snapshot.state_group, snapshot.group_hops
            state_before = snapshot
        else:
            group_id += 1
            before_group = group_id
            before_hops = self._group_before(ctx, snapshot, group_id, delta_before, plan)
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
            changes = _difference(StateIds(snapshot.state), resolved)
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
                delta = _difference(after_ids, resolved)
                current_hops = self._new_group(
                    room_id, group_id, after_group, after_hops, delta, lambda: resolved, plan
                )

        memberships = snapshot.memberships
        # A room joined through another server: its first event here arrives with the room's whole
        # state. That state existed before the event, so its deltas are dated just before it: state
        # at a stream position (sync, /messages) then shows the room as it was when we joined.
        learnt = (
            ctx.kind is EventKind.REMOTE_NEW
            and not snapshot.state
            and snapshot.state_group is None
            and bool(ctx.state_before)
        )
        for k, v in changes.items():
            prev_event = snapshot.state.get(k)
            prev_id = prev_event.event_id if prev_event is not None else None
            if learnt and k in ctx.state_before:
                prev_id = ctx.state_before[k]
                plan.deltas.append((ordering - 1, room_id, k[0], k[1], prev_id, None))
                if prev_id != v:
                    plan.deltas.append((ordering, room_id, k[0], k[1], v, prev_id))
            else:
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
                    plan.members.append(membership_row(member, ordering))
        last_state = snapshot.last_state_stream
        if changes:  # deltas are dated at `ordering` (or just before it): none is later
            last_state = max(ordering, snapshot.last_stream if last_state is None else last_state)
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
            last_state,
        )
        return persisted, new_snapshot, group_id

    def _group_before(
        self,
        ctx: EventContext,
        snapshot: RoomSnapshot,
        group: int,
        delta: dict[StateKey, str | None] | None,
        plan: BatchPlan,
    ) -> int:
        """Store `ctx.state_before` as group `group` (`delta` on the room's current group when it
        has one); returns its hop count."""
        before = ctx.state_before
        if snapshot.state_group is None or delta is None:
            plan.groups.append(NewStateGroup(group, snapshot.room_id, None, 0, dict(before)))
            return 0
        return self._new_group(
            snapshot.room_id, group, snapshot.state_group, snapshot.group_hops, delta, lambda: before, plan
        )

    async def _snapshot_of(
        self, snapshot: RoomSnapshot, state_ids: Mapping[StateKey, str], lookup: EventLookup
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
        lookup: EventLookup,
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
            replaces_outlier=ctx.replaces_outlier,
        )


def _difference(old: Mapping[StateKey, str], new: Mapping[StateKey, str]) -> dict[StateKey, str | None]:
    """What turns state `old` into `new`: changed and added keys, and None for removed ones."""
    delta: dict[StateKey, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    delta.update({k: None for k in old if k not in new})
    return delta
