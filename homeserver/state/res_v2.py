"""State resolution v2 and v2.1 (rooms/fragments/v2-state-res.md; rooms/v12.md), pure code.

`resolve_state_v2` takes the state maps to resolve (`(type, state_key) -> event_id`) and the events
they and their auth chains reference, and returns the resolved state map. It does no I/O and never
touches an event loop: callers with big inputs run it in a thread executor. The caller supplies
every event the algorithm reads (the full conflicted set and the auth events of those events); a
missing auth event is skipped, as Synapse does, rather than failing the resolution.

Auth chains: by default the auth difference (and, for v2.1, the conflicted state subgraph) is
computed from `event_map` by graph walks (`auth_difference`, `conflicted_subgraph`), which needs
the whole auth chains of the state sets in the map. A caller with an auth-chain index (the persister,
later) passes them precomputed instead and then only needs the full conflicted set and its auth
events in `event_map`.

Room-version switches (RoomVersion.state_res):
- V2 (rooms v3-v11): the first iterative auth checks pass starts from the unconflicted state map.
- V2_1 (room v12, MSC4297): it starts from an empty state map, and the full conflicted set also
  includes the conflicted state subgraph. Room v12 creators have infinite power in the power ordering
  (MSC4289), and since v12 events do not cite the create event, it is found through the room id.

Complexity, with V events and E auth edges in the graphs walked, and k state sets:
- split into unconflicted/conflicted: O(k * |keys|);
- auth difference: O(k * (V + E)) (one walk per state set, no per-event chain sets);
- conflicted subgraph: O(V + E) (one backward walk, one forward walk);
- power ordering: O((V + E) log V) (Kahn's algorithm with a heap);
- mainline ordering: O(V + E + P) with memoised mainline depths (P = power-levels chain length),
  then O(V log V) to sort;
- iterative auth checks: O(V) calls to `check_auth_rules`, each O(size of the auth state).
Nothing is quadratic in the number of events.

Choices where the spec is loose or silent:
- A key missing from some state set is conflicted (as in Synapse).
- `m.room.create` counts as a power event (as in Synapse).
- Rejected events are never used as auth events (the spec says so). A rejected event in the sorted
  lists is checked again like any other, per the spec's "Rejected events" section; Synapse instead
  never admits a previously rejected event (its issue #13797 calls that non-compliant).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Final

from homeserver.events import constants as c
from homeserver.events.auth import (
    CREATE_KEY,
    CREATOR_POWER_LEVEL,
    POWER_LEVELS_KEY,
    AuthError,
    StateKey,
    auth_types_for_event,
    check_auth_rules,
    parse_power_level,
    room_creator,
    room_creators,
)
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, StateResAlgorithm

StateMap = Mapping[StateKey, str]
EventMap = Mapping[str, Event]

# Synapse's sentinel for "no power levels event in the mainline walk": sorts before every mainline
# position (mainline depths count from the oldest power levels event, starting at 1).
_NO_MAINLINE: Final = 0


class StateResolutionError(Exception):
    """The inputs are unusable: an event the algorithm must read is missing from the event map."""


# -- public entry point -----------------------------------------------------------------------------


def resolve_state_v2(
    room_version: RoomVersion,
    state_sets: Sequence[StateMap],
    event_map: EventMap,
    *,
    auth_difference_ids: Collection[str] | None = None,
    conflicted_subgraph_ids: Collection[str] | None = None,
    rejected_event_ids: Collection[str] = (),
) -> dict[StateKey, str]:
    """Resolve `state_sets` with the v2 algorithm (v2.1 for rooms whose version says so).

    `auth_difference_ids`: the auth difference of the state sets, if the caller has an index;
    computed from `event_map` otherwise. `conflicted_subgraph_ids` likewise (used by v2.1 only).
    `rejected_event_ids`: events rejected on receipt; never used as auth events.

    Raises StateResolutionError when an event of the full conflicted set is not in `event_map`.
    """
    if not state_sets:
        return {}
    unconflicted, conflicted = split_conflicted(state_sets)
    if not conflicted:
        return dict(unconflicted)

    conflicted_ids: set[str] = set()
    for ids in conflicted.values():
        conflicted_ids.update(ids)
    v2_1 = room_version.state_res is StateResAlgorithm.V2_1

    if auth_difference_ids is None:
        auth_difference_ids = auth_difference(state_sets, event_map)
    full_conflicted = conflicted_ids | set(auth_difference_ids)
    if v2_1:
        if conflicted_subgraph_ids is None:
            conflicted_subgraph_ids = conflicted_subgraph(conflicted_ids, event_map)
        full_conflicted.update(conflicted_subgraph_ids)

    missing = sorted(e for e in full_conflicted if e not in event_map)
    if missing:
        raise StateResolutionError(f"Events of the full conflicted set are missing: {missing[:5]}")

    resolver = _Resolver(room_version, event_map, rejected_event_ids)

    # Step 1: power events of the full conflicted set plus their auth chains within it, in reverse
    # topological power order.
    power_ids = [e for e in full_conflicted if is_power_event(event_map[e])]
    sorted_power = resolver.reverse_topological_power_sort(power_ids, full_conflicted)

    # Step 2: iterative auth checks from the unconflicted state (v2) or from nothing (v2.1).
    base: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
    partial = resolver.iterative_auth_checks(sorted_power, base)

    # Step 3: the rest, in mainline order of the resolved power levels.
    picked = set(sorted_power)
    leftover = [e for e in full_conflicted if e not in picked]
    leftover = resolver.mainline_sort(leftover, partial.get(POWER_LEVELS_KEY))

    # Step 4: iterative auth checks on top of the partial state.
    resolved = resolver.iterative_auth_checks(leftover, partial)

    # Step 5: the unconflicted state map wins.
    resolved.update(unconflicted)
    return resolved


# -- definitions ------------------------------------------------------------------------------------


def split_conflicted(state_sets: Sequence[StateMap]) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """(unconflicted state map, conflicted state set by key). A key absent from some state set is
    conflicted; the conflicted ids exclude the absence."""
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    keys: set[StateKey] = set()
    for state_set in state_sets:
        keys.update(state_set)
    for key in keys:
        values = {state_set.get(key) for state_set in state_sets}
        if len(values) == 1:
            (value,) = values
            if value is not None:
                unconflicted[key] = value
        else:
            conflicted[key] = {v for v in values if v is not None}
    return unconflicted, conflicted


def is_power_event(event: Event) -> bool:
    """Power levels, join rules, create (as in Synapse) or a kick/ban of someone else."""
    if event.state_key == "" and event.type in (c.POWER_LEVELS, c.JOIN_RULES, c.CREATE):
        return True
    if event.type == c.MEMBER and event.state_key is not None:
        return event.membership in (c.LEAVE, c.BAN) and event.sender != event.state_key
    return False


def auth_chain(event_ids: Iterable[str], event_map: EventMap) -> set[str]:
    """The union of the auth chains of `event_ids` (the events themselves excluded, unless one is in
    another's chain). Events missing from the map end the walk on that branch. O(V + E)."""
    seen: set[str] = set()
    stack: list[str] = []
    for event_id in event_ids:
        event = event_map.get(event_id)
        if event is not None:
            stack.extend(event.auth_event_ids)
    while stack:
        event_id = stack.pop()
        if event_id in seen:
            continue
        seen.add(event_id)
        event = event_map.get(event_id)
        if event is not None:
            stack.extend(a for a in event.auth_event_ids if a not in seen)
    return seen


def auth_difference(state_sets: Sequence[StateMap], event_map: EventMap) -> set[str]:
    """∪ C_i − ∩ C_i, where C_i is the full auth chain of state set i. O(k * (V + E)).

    Following Synapse, each C_i includes the state set's own events: an event that is in one state
    set and only in the auth chain of another is then not part of the difference.
    """
    chains = []
    for state_set in state_sets:
        ids = set(state_set.values())
        chains.append(auth_chain(ids, event_map) | ids)
    if not chains:
        return set()
    union = set().union(*chains)
    intersection = set(chains[0]).intersection(*chains[1:])
    return union - intersection


def conflicted_subgraph(conflicted_ids: Collection[str], event_map: EventMap) -> set[str]:
    """v2.1: every event on an auth_events path between two conflicted events, endpoints included.

    An event is on such a path iff it is reachable from a conflicted event (backwards, along
    auth_events) and can reach one. One backward walk from the conflicted set, then one forward walk
    over the reversed edges of the events found. O(V + E).
    """
    conflicted = set(conflicted_ids)
    # Backward reachability, recording reverse edges as we go.
    backward: set[str] = set()
    children: dict[str, list[str]] = {}
    stack = list(conflicted)
    while stack:
        event_id = stack.pop()
        if event_id in backward:
            continue
        backward.add(event_id)
        event = event_map.get(event_id)
        if event is None:
            continue
        for auth_id in event.auth_event_ids:
            children.setdefault(auth_id, []).append(event_id)
            if auth_id not in backward:
                stack.append(auth_id)
    # Forward reachability from conflicted events over the recorded edges. A conflicted event that is
    # in another's auth chain reaches that one; any event between them is reached here too.
    forward: set[str] = set()
    stack = [e for e in conflicted if e in backward]
    while stack:
        event_id = stack.pop()
        if event_id in forward:
            continue
        forward.add(event_id)
        stack.extend(child for child in children.get(event_id, ()) if child not in forward)
    return backward & forward


# -- the algorithm's steps --------------------------------------------------------------------------


class _Resolver:
    """The steps that read events; holds the per-resolution caches (power levels, mainline depths)."""

    def __init__(self, room_version: RoomVersion, event_map: EventMap, rejected: Collection[str]) -> None:
        self.room_version = room_version
        self.event_map = event_map
        self.rejected = set(rejected)

    # helpers -------------------------------------------------------------------------------------

    def _auth_events(self, event: Event) -> Iterable[Event]:
        for auth_id in event.auth_event_ids:
            auth_event = self.event_map.get(auth_id)
            if auth_event is not None:
                yield auth_event

    def _create_for(self, event: Event) -> Event | None:
        """The room's create event: from the auth events, or (v12) the event its room id names."""
        if self.room_version.room_ids_as_hashes:
            return self.event_map.get("$" + event.room_id[1:])
        for auth_event in self._auth_events(event):
            if (auth_event.type, auth_event.state_key) == CREATE_KEY:
                return auth_event
        return None

    def _power_levels_in_auth(self, event: Event) -> Event | None:
        for auth_event in self._auth_events(event):
            if (auth_event.type, auth_event.state_key) == POWER_LEVELS_KEY:
                return auth_event
        return None

    def sender_power_level(self, event: Event) -> int:
        """The sender's level according to the event's auth events (for the power ordering)."""
        create = self._create_for(event)
        if (
            create is not None
            and self.room_version.privileged_creators
            and event.sender in room_creators(create)
        ):
            return CREATOR_POWER_LEVEL
        power_levels = self._power_levels_in_auth(event)
        if power_levels is None:
            if create is not None and room_creator(create) == event.sender:
                return 100
            return 0
        content = power_levels.content
        users = content.get("users")
        level = users.get(event.sender) if isinstance(users, Mapping) else None
        if level is None:
            level = content.get("users_default", 0)
        # An unparsable level sorts as 0 (Synapse would raise; such an event fails auth anyway).
        parsed = parse_power_level(level) if level is not None else 0
        return parsed if parsed is not None else 0

    # step 1 --------------------------------------------------------------------------------------

    def reverse_topological_power_sort(
        self, event_ids: Iterable[str], full_conflicted: Collection[str]
    ) -> list[str]:
        """The events and their auth chains within `full_conflicted`, earliest first; among the
        events whose auth events are all placed, the highest sender level, then the lowest
        origin_server_ts, then the lowest event id goes first."""
        # graph: event -> its auth events within the full conflicted set.
        graph: dict[str, set[str]] = {}
        stack = list(event_ids)
        while stack:
            event_id = stack.pop()
            if event_id in graph:
                continue
            edges = {a for a in self.event_map[event_id].auth_event_ids if a in full_conflicted}
            graph[event_id] = edges
            stack.extend(a for a in edges if a not in graph)
        return lexicographical_topological_sort(graph, self._power_order_key)

    def _power_order_key(self, event_id: str) -> tuple[int, int, str]:
        event = self.event_map[event_id]
        return (-self.sender_power_level(event), event.origin_server_ts, event_id)

    # step 3 --------------------------------------------------------------------------------------

    def mainline_sort(self, event_ids: list[str], power_levels_id: str | None) -> list[str]:
        """Order by mainline position of the resolved power levels (earliest mainline first), then
        origin_server_ts, then event id."""
        if not event_ids:
            return []
        mainline: list[str] = []
        seen: set[str] = set()
        current = self.event_map.get(power_levels_id) if power_levels_id is not None else None
        while current is not None and current.event_id not in seen:
            seen.add(current.event_id)
            mainline.append(current.event_id)
            current = self._power_levels_in_auth(current)
        # Depth counts from the oldest mainline event (1) so that "greater position" sorts first.
        depths: dict[str, int] = {event_id: i for i, event_id in enumerate(reversed(mainline), start=1)}

        def key(event_id: str) -> tuple[int, int, str]:
            event = self.event_map[event_id]
            return (self._mainline_depth(event, depths), event.origin_server_ts, event_id)

        return sorted(event_ids, key=key)

    def _mainline_depth(self, event: Event, depths: dict[str, int]) -> int:
        """Depth of the first mainline event on the event's power-levels chain (the event itself
        included, as in Synapse); memoised in `depths` for every event walked, so each power levels
        event is walked once per resolution."""
        walked: list[str] = []
        walked_set: set[str] = set()
        current: Event | None = event
        depth = _NO_MAINLINE
        while current is not None:
            known = depths.get(current.event_id)
            if known is not None:
                depth = known
                break
            walked.append(current.event_id)
            walked_set.add(current.event_id)
            current = self._power_levels_in_auth(current)
            if current is not None and current.event_id in walked_set:  # a cycle: only in forged input
                break
        for event_id in walked:
            depths[event_id] = depth
        return depth

    # steps 2 and 4 -------------------------------------------------------------------------------

    def iterative_auth_checks(
        self, event_ids: Sequence[str], base: Mapping[StateKey, str]
    ) -> dict[StateKey, str]:
        """Apply each event in order if `check_auth_rules` allows it against the state so far, falling
        back to the event's own (non-rejected) auth events for keys the state lacks."""
        state = dict(base)
        room_version = self.room_version
        for event_id in event_ids:
            event = self.event_map[event_id]
            if event.state_key is None:
                continue  # only state events take part (the inputs are state, so never in practice)
            auth_state: dict[StateKey, Event] = {}
            for auth_event in self._auth_events(event):
                if auth_event.event_id not in self.rejected and auth_event.state_key is not None:
                    auth_state[(auth_event.type, auth_event.state_key)] = auth_event
            if room_version.room_ids_as_hashes and event.type != c.CREATE:
                create = self._create_for(event)
                if create is not None and create.event_id not in self.rejected:
                    auth_state[CREATE_KEY] = create
            keys = auth_types_for_event(
                room_version,
                type=event.type,
                sender=event.sender,
                state_key=event.state_key,
                content=event.content,
            )
            for key in keys:
                state_id = state.get(key)
                if state_id is None or state_id in self.rejected:
                    continue
                state_event = self.event_map.get(state_id)
                if state_event is not None:
                    auth_state[key] = state_event
            try:
                check_auth_rules(room_version, event, auth_state)
            except AuthError:
                continue
            state[(event.type, event.state_key)] = event_id
            # Re-authorised against the resolved state: usable as an auth event from now on.
            self.rejected.discard(event_id)
        return state


def lexicographical_topological_sort(
    graph: dict[str, set[str]], key: Callable[[str], tuple[int, int, str]]
) -> list[str]:
    """Kahn's algorithm on `graph` (node -> the nodes it points at, all keys of `graph`), emitting a
    node once everything it points at is emitted, smallest `key` first among the ready nodes.
    O((V + E) log V). `graph` is not modified."""
    remaining = {node: len(edges) for node, edges in graph.items()}
    pointed_at_by: dict[str, list[str]] = {node: [] for node in graph}
    for node, edges in graph.items():
        for target in edges:
            pointed_at_by[target].append(node)
    ready = [(key(node), node) for node, count in remaining.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        ordered.append(node)
        for parent in pointed_at_by[node]:
            remaining[parent] -= 1
            if remaining[parent] == 0:
                heapq.heappush(ready, (key(parent), parent))
    return ordered
