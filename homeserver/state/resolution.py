"""Merging the states of a forked room: the state-resolution hook.

When a room has several forward extremities its current state is the resolution of the states
after each of them. Most forks merge trivially (`merge_unconflicted`: every key has one value
across the sets). Only a real conflict goes to a `StateResolver`.

`V2StateResolver` is the one resolver: state resolution v2 for every supported room version
(v3+), v2.1 where the room version says so (`RoomVersion.state_res`, room v12). The algorithm is
the pure `state/res_v2.resolve_state_v2`; this module feeds it from storage:

- the auth difference from the auth-chain index (`StateStore.auth_edges`, one level per query;
  events without index rows, e.g. the create event or events of the batch being written, are read
  through the persister's event lookup). With U the unconflicted state and X_i the conflicted
  entries of set i, the full auth chain of set i is C_i = B + X'_i where B = U + chain(U) and
  X'_i = X_i + chain(X_i), so the auth difference is (union X'_i) - (intersection X'_i) - B: one
  walk of the common part and one small walk per set instead of a full walk per set;
- the events the algorithm reads: the conflicted events and their auth chains, the unconflicted
  state events their auth checks select, and the mainline of the unconflicted power levels;
- events stored as rejected (`StateStore.rejected_event_ids`), never used as auth events.

Large resolutions run in a worker thread (`resolve_state_v2` is pure and does no I/O), so a big
fork does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Final, Protocol

from homeserver.events.auth import POWER_LEVELS_KEY, auth_types_for_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.state.res_v2 import StateResolutionError, resolve_state_v2, split_conflicted
from homeserver.storage.stores.state import StateStore

logger = logging.getLogger(__name__)

# Resolutions reading more events than this run in a worker thread.
THREAD_THRESHOLD: Final = 500

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]
# event ids -> the events found (missing ones left out)
EventLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, Event]]]


def merge_unconflicted(state_sets: Sequence[StateMap]) -> dict[StateKey, str] | None:
    """The union of the sets when no key has two different values (absent counts as a value,
    as in v2's "conflicted state set"); None when the sets conflict."""
    if not state_sets:
        return {}
    first = state_sets[0]
    if all(s is first or s == first for s in state_sets[1:]):
        return dict(first)
    keys: set[StateKey] = set()
    for s in state_sets:
        keys.update(s.keys())
    merged: dict[StateKey, str] = {}
    for key in keys:
        values = {s.get(key) for s in state_sets}
        if len(values) != 1:
            return None
        value = values.pop()
        if value is not None:
            merged[key] = value
    return merged


def conflicted_keys(state_sets: Sequence[StateMap]) -> set[StateKey]:
    keys: set[StateKey] = set()
    for s in state_sets:
        keys.update(s.keys())
    return {k for k in keys if len({s.get(k) for s in state_sets}) > 1}


class StateResolver(Protocol):
    async def resolve(
        self, version: RoomVersion, room_id: str, state_sets: Sequence[StateMap], lookup: EventLookup
    ) -> dict[StateKey, str]:
        """The resolved state of `state_sets` (two or more, conflicting)."""
        ...


class V2StateResolver:
    """State resolution v2 / v2.1 over the stored DAG (see the module docstring)."""

    def __init__(self, groups: StateStore, *, thread_threshold: int = THREAD_THRESHOLD) -> None:
        self.groups = groups
        self.thread_threshold = thread_threshold

    async def resolve(
        self, version: RoomVersion, room_id: str, state_sets: Sequence[StateMap], lookup: EventLookup
    ) -> dict[StateKey, str]:
        unconflicted, conflicted = split_conflicted(state_sets)
        if not conflicted:
            return unconflicted
        conflicted_ids: set[str] = set().union(*conflicted.values())

        # Auth difference: (union X'_i) - (intersection X'_i) - B.
        per_set: list[set[str]] = []
        chains: dict[str, set[str]] = {}
        for state_set in state_sets:
            own = {state_set[k] for k in conflicted if k in state_set}
            per_set.append(own | await self._chain_of(own, lookup, chains))
        everything = set().union(*per_set)
        common = set(per_set[0]).intersection(*per_set[1:])
        candidates = everything - common
        if candidates:
            unconflicted_ids = set(unconflicted.values())
            base = unconflicted_ids | await self._auth_chain(unconflicted_ids, lookup)
            candidates -= base
        auth_difference = candidates

        # The events the algorithm reads.
        wanted = set(everything)
        events = dict(await lookup(sorted(wanted)))
        needed_state: set[str] = set()
        for event_id in conflicted_ids | auth_difference:
            event = events.get(event_id)
            if event is None:
                continue
            for key in auth_types_for_event(
                version,
                type=event.type,
                sender=event.sender,
                state_key=event.state_key,
                content=event.content,
            ):
                value = unconflicted.get(key)
                if value is not None:
                    needed_state.add(value)
        power_levels = unconflicted.get(POWER_LEVELS_KEY)
        if power_levels is not None:
            needed_state.add(power_levels)
        if version.room_ids_as_hashes:
            # v12: events do not cite the create event; the algorithm finds it by the room id.
            needed_state.add("$" + room_id[1:])
        needed_state -= events.keys()
        if needed_state:
            events.update(await lookup(sorted(needed_state)))
        if power_levels is not None:
            await self._add_mainline(power_levels, events, lookup)
        rejected = await self.groups.rejected_event_ids(sorted(events))

        def run() -> dict[StateKey, str]:
            return resolve_state_v2(
                version,
                state_sets,
                events,
                auth_difference_ids=auth_difference,
                rejected_event_ids=rejected,
            )

        try:
            if len(events) > self.thread_threshold:
                return await asyncio.to_thread(run)
            return run()
        except StateResolutionError as exc:
            # Only possible when events of the DAG are missing locally; keep the room usable with
            # the unconflicted state plus, per key, the candidate from the first state set.
            logger.error("state resolution in %s failed: %s; keeping the first state's values", room_id, exc)
            resolved = dict(unconflicted)
            for key in conflicted:
                for state_set in state_sets:
                    if key in state_set:
                        resolved[key] = state_set[key]
                        break
            return resolved

    async def _chain_of(
        self, event_ids: set[str], lookup: EventLookup, cache: dict[str, set[str]]
    ) -> set[str]:
        key = ",".join(sorted(event_ids))
        if key not in cache:
            cache[key] = await self._auth_chain(event_ids, lookup)
        return cache[key]

    async def _auth_chain(self, event_ids: Iterable[str], lookup: EventLookup) -> set[str]:
        """The union of the auth chains of `event_ids`, one index query per level; events the index
        does not have (create events, this batch's events) are read for their auth_events."""
        seen: set[str] = set()
        frontier = list(dict.fromkeys(event_ids))
        while frontier:
            edges = await self.groups.auth_edges(frontier)
            unindexed = [e for e in frontier if e not in edges]
            if unindexed:
                for event_id, event in (await lookup(unindexed)).items():
                    edges[event_id] = list(event.auth_event_ids)
            next_frontier: list[str] = []
            for event_id in frontier:
                for auth_id in edges.get(event_id, ()):
                    if auth_id not in seen:
                        seen.add(auth_id)
                        next_frontier.append(auth_id)
            frontier = next_frontier
        return seen

    async def _add_mainline(
        self, power_levels_id: str, events: dict[str, Event], lookup: EventLookup
    ) -> None:
        """Load the chain of power levels events behind `power_levels_id` (the mainline)."""
        current = events.get(power_levels_id)
        seen: set[str] = set()
        while current is not None and current.event_id not in seen:
            seen.add(current.event_id)
            auth_ids = list(current.auth_event_ids)
            missing = [a for a in auth_ids if a not in events]
            if missing:
                events.update(await lookup(missing))
            current = next(
                (
                    events[a]
                    for a in auth_ids
                    if a in events and (events[a].type, events[a].state_key) == POWER_LEVELS_KEY
                ),
                None,
            )
