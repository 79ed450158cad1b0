"""Merging the states of a forked room: the state-resolution hook.

When a room has several forward extremities its current state is the resolution of the states
after each of them. Most forks merge trivially (`merge_unconflicted`: every key has one value
across the sets). Only a real conflict goes to a `StateResolver`.

The resolver here, `PlaceholderStateResolver`, is a PLACEHOLDER until federation lands: it does
not implement the spec's state resolution v2 (no auth-chain difference, no power-level or
mainline ordering, no auth re-checks). Federation replaces it with v2 (`RoomVersion` flags select
the algorithm, pure functions over the auth-chain index in `storage/stores/state.py`). Until then
forks arise only from hand-built contexts (tests), so nothing a user sees depends on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion

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


class PlaceholderStateResolver:
    """PLACEHOLDER for state resolution v2 (see the module docstring): unconflicted keys are
    kept; for each conflicted key the candidate event with the greatest (depth, event_id) wins;
    a key is never dropped. Deterministic, so every process resolves a fork the same way."""

    async def resolve(
        self, version: RoomVersion, room_id: str, state_sets: Sequence[StateMap], lookup: EventLookup
    ) -> dict[StateKey, str]:
        conflicted = conflicted_keys(state_sets)
        resolved: dict[StateKey, str] = {}
        for s in state_sets:
            for key, event_id in s.items():
                if key not in conflicted:
                    resolved[key] = event_id
        candidates = {s[k] for s in state_sets for k in conflicted if k in s}
        events = await lookup(sorted(candidates))
        for key in conflicted:
            options = [s[key] for s in state_sets if key in s]
            known = [events[e] for e in options if e in events]
            if known:
                best = max(known, key=lambda e: (e.depth, e.event_id))
                resolved[key] = best.event_id
            elif options:
                resolved[key] = max(options)
        return resolved
