"""V2StateResolver (state/resolution.py): the storage-fed adapter gives the same answer as the pure
algorithm given every event, on the classic cases of test_state_res_v2, whether auth edges come
from the auth-chain index or (for unindexed events) from the events themselves, and in a thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.state.res_v2 import resolve_state_v2
from homeserver.state.resolution import V2StateResolver

from .test_state_res_v2 import CLASSIC, CLASSIC_VERSIONS, Case, Graph


class FakeIndex:
    """StateStore's reads used by the resolver, over a hand-built graph. Events named in
    `unindexed` have no index rows (like create events and events not committed yet)."""

    def __init__(self, events: Mapping[str, Event], unindexed: set[str], rejected: set[str]) -> None:
        self.events = events
        self.unindexed = unindexed
        self.rejected = rejected
        self.queries = 0

    async def auth_edges(self, event_ids: Sequence[str]) -> dict[str, list[str]]:
        self.queries += 1
        return {
            e: list(self.events[e].auth_event_ids)
            for e in event_ids
            if e in self.events and e not in self.unindexed and self.events[e].auth_event_ids
        }

    async def rejected_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        return {e for e in event_ids if e in self.rejected}


async def _resolve(graph: Graph, rv: RoomVersion, unindexed: set[str], threshold: int = 500) -> dict:
    prevs = graph.events["$END"].prev_event_ids
    sets = [graph.state_after[p[1:]] for p in prevs]
    index = FakeIndex(graph.events, unindexed, set())
    resolver = V2StateResolver(index, thread_threshold=threshold)  # type: ignore[arg-type]

    async def lookup(ids: Sequence[str]) -> Mapping[str, Event]:
        return {e: graph.events[e] for e in ids if e in graph.events}

    return await resolver.resolve(rv, graph.room_id, sets, lookup)


@pytest.mark.parametrize("rv", CLASSIC_VERSIONS, ids=lambda rv: f"v{rv.identifier}")
@pytest.mark.parametrize("case", CLASSIC, ids=lambda case: case.name)
async def test_adapter_matches_the_pure_algorithm(case: Case, rv: RoomVersion) -> None:
    graph = Graph(rv, case.nodes, case.edges, case.creators)
    prevs = graph.events["$END"].prev_event_ids
    sets = [graph.state_after[p[1:]] for p in prevs]
    expected = resolve_state_v2(rv, sets, graph.events)
    assert await _resolve(graph, rv, set()) == expected
    # the newest events of each branch not indexed yet (a batch being written)
    assert await _resolve(graph, rv, set(prevs)) == expected


async def test_adapter_in_a_worker_thread() -> None:
    case = next(c for c in CLASSIC if c.name == "topic_basic")
    rv = CLASSIC_VERSIONS[0]
    graph = Graph(rv, case.nodes, case.edges, case.creators)
    prevs = graph.events["$END"].prev_event_ids
    expected = resolve_state_v2(rv, [graph.state_after[p[1:]] for p in prevs], graph.events)
    assert await _resolve(graph, rv, set(), threshold=0) == expected


async def test_missing_events_keep_the_room_usable() -> None:
    case = next(c for c in CLASSIC if c.name == "ban_vs_pl")
    rv = CLASSIC_VERSIONS[0]
    graph = Graph(rv, case.nodes, case.edges, case.creators)
    prevs = graph.events["$END"].prev_event_ids
    sets = [graph.state_after[p[1:]] for p in prevs]
    index = FakeIndex(graph.events, set(), set())

    async def lookup(ids: Sequence[str]) -> Mapping[str, Event]:
        return {e: graph.events[e] for e in ids if e in graph.events and e != "$MB"}

    resolved = await V2StateResolver(index).resolve(rv, graph.room_id, sets, lookup)  # type: ignore[arg-type]
    # unconflicted keys kept, each conflicted key takes the first state set's value
    for key, value in resolved.items():
        assert value in {s.get(key) for s in sets}
