"""The federation read endpoints of a room's history and state: /backfill, /get_missing_events,
/event, /event_auth, /state, /state_ids, /timestamp_to_event (server-server API, "Backfilling and
retrieving missing events", "Retrieving events").

Every read passes `ServerAccess` first (room known, ACL, origin in the room or world-readable).
Timeline reads walk the DAG through `event_edges` and are bounded as in Synapse: /backfill returns
at most 100 events, /get_missing_events at most 20 (and stops after `MAX_MISSING_WALK` lookups, so
a long `latest_events` list cannot make us loop). Outliers have no place in the DAG and rejected
events are never served as timeline; events the origin may not see come back redacted.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from homeserver.core import ids
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, forbidden, not_found
from homeserver.events.event import Event
from homeserver.federation.server_access import ServerAccess
from homeserver.state.service import StateService
from homeserver.storage.stores.dag import DagStore, EventMeta
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.state import StateStore
from homeserver.storage.stores.timeline import MAX_POSITION, TimelineStore

# Synapse asks for 100 events per /backfill and serves no more.
MAX_BACKFILL = 100
# Synapse's cap and the spec's default for /get_missing_events.
MAX_MISSING = 20
DEFAULT_MISSING = 10
# prev_events lookups one /get_missing_events may make.
MAX_MISSING_WALK = 200
# /timestamp_to_event: batches of candidates scanned for one the origin may see.
TIMESTAMP_BATCH = 100
TIMESTAMP_BATCHES = 10


def pdu_of(stored: StoredEvent) -> dict[str, Any]:
    """The PDU as served: in its redacted form once redacted here (hashes and signatures cover
    the redacted form, so it still verifies)."""
    return stored.event.redacted().pdu if stored.redacted_by is not None else stored.event.pdu


def _by_depth(metas: Sequence[EventMeta]) -> list[EventMeta]:
    return sorted(metas, key=lambda m: (m.depth, m.stream_ordering), reverse=True)


class FederationRoomReads:
    def __init__(
        self,
        access: ServerAccess,
        events: EventStore,
        dag: DagStore,
        state: StateService,
        groups: StateStore,
        timeline: TimelineStore,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self.access = access
        self.events = events
        self.dag = dag
        self.state_service = state
        self.groups = groups
        self.timeline = timeline
        self.clock = clock
        self.server_name = server_name

    def transaction(self, pdus: Sequence[Event]) -> dict[str, Any]:
        return {
            "origin": self.server_name,
            "origin_server_ts": self.clock.time_ms(),
            "pdus": [e.pdu for e in pdus],
        }

    # -- timeline ----------------------------------------------------------------------------------

    async def backfill(self, origin: str, room_id: str, seeds: Sequence[str], limit: int) -> dict[str, Any]:
        """The given events and those before them along prev_events, deepest first (a breadth-first,
        depth-ordered walk as Synapse's), at most `limit` (capped at MAX_BACKFILL)."""
        await self.access.readable_room(origin, room_id)
        limit = min(limit, MAX_BACKFILL)
        metas = await self.dag.get_meta(list(seeds)[:limit])
        queue = [
            (-m.depth, -m.stream_ordering, m.event_id, m)
            for m in metas.values()
            if m.room_id == room_id and not m.outlier
        ]
        heapq.heapify(queue)
        found: dict[str, EventMeta] = {}
        while queue and len(found) < limit:
            _, _, event_id, meta = heapq.heappop(queue)
            if event_id in found:
                continue
            found[event_id] = meta
            for prev in await self.dag.list_prev_meta(event_id, limit - len(found)):
                if prev.event_id not in found and prev.room_id == room_id:
                    heapq.heappush(queue, (-prev.depth, -prev.stream_ordering, prev.event_id, prev))
        ordered = [m.event_id for m in _by_depth(list(found.values())) if not m.rejected]
        stored = await self.events.get_events_ordered(ordered)
        return self.transaction(await self.access.filter_events(origin, stored))

    async def missing_events(
        self,
        origin: str,
        room_id: str,
        earliest: Sequence[str],
        latest: Sequence[str],
        *,
        limit: int = DEFAULT_MISSING,
        min_depth: int = 0,
    ) -> dict[str, Any]:
        """A breadth-first walk of the prev_events of `latest`, skipping `earliest` (and not going
        past them) and events below `min_depth`, oldest first, at most `limit` (capped)."""
        await self.access.readable_room(origin, room_id)
        limit = min(limit, MAX_MISSING)
        seen = set(earliest)
        starts = await self.dag.get_meta([e for e in latest if e not in seen][:MAX_MISSING_WALK])
        front = [e for e in dict.fromkeys(latest) if e in starts and starts[e].room_id == room_id]
        seen.update(front)
        results: list[EventMeta] = []
        lookups = 0
        while front and len(results) < limit and lookups < MAX_MISSING_WALK:
            next_front: list[str] = []
            for event_id in front:
                if len(results) >= limit or lookups >= MAX_MISSING_WALK:
                    break
                lookups += 1
                for prev in await self.dag.list_prev_meta(event_id, limit - len(results)):
                    if prev.event_id in seen or prev.room_id != room_id:
                        continue
                    seen.add(prev.event_id)
                    if prev.depth < min_depth:
                        continue
                    results.append(prev)
                    next_front.append(prev.event_id)
            front = next_front
        # Walked backwards from the latest events: reversed, they are roughly chronological.
        ordered = [m.event_id for m in reversed(results) if not m.rejected]
        stored = await self.events.get_events_ordered(ordered)
        pdus = await self.access.filter_events(origin, stored)
        return {"events": [e.pdu for e in pdus]}

    # -- single events -----------------------------------------------------------------------------

    async def event(self, origin: str, event_id: str) -> dict[str, Any]:
        """Any event we hold (outliers too: auth events often are), as the origin may see it."""
        if not ids.is_valid_event_id(event_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid event id")
        stored = await self.events.get_event(event_id)
        if stored is None:
            raise not_found(f"Could not find event {event_id}")
        await self.access.readable_room(origin, stored.event.room_id)
        return self.transaction(await self.access.filter_events(origin, [stored]))

    async def _event_in_room(self, room_id: str, event_id: str) -> StoredEvent:
        """A non-rejected event of the room, else 404 (as Synapse: rejected events are unknown)."""
        if not ids.is_valid_event_id(event_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid event id")
        meta = (await self.dag.get_meta([event_id])).get(event_id)
        stored = await self.events.get_event(event_id) if meta is not None else None
        if meta is None or stored is None or meta.room_id != room_id or meta.rejected:
            raise not_found(f"Could not find event {event_id}")
        return stored

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        await self.access.readable_room(origin, room_id)
        await self._event_in_room(room_id, event_id)
        chain = await self._events_by_depth(await self.groups.auth_chain_ids([event_id]))
        return {"auth_chain": [pdu_of(s) for s in chain]}

    # -- state -------------------------------------------------------------------------------------

    async def _state_before(self, origin: str, room_id: str, event_id: str) -> tuple[list[str], list[str]]:
        """(state ids before the event, their auth chain ids), both sorted."""
        await self.access.readable_room(origin, room_id)
        stored = await self._event_in_room(room_id, event_id)
        if stored.outlier:
            raise not_found(f"State not known at event {event_id}")
        # The state at an event the origin may not see would show what its history hides.
        if not await self.access.visible(origin, [stored]):
            raise forbidden("You do not have permission to access the state at the requested event.")
        state = await self.state_service.state_ids_at_event(event_id, before=True)
        if state is None:
            raise not_found(f"State not known at event {event_id}")
        pdu_ids = sorted(set(state.values()))
        auth_ids = sorted(await self.groups.auth_chain_ids(pdu_ids))
        return pdu_ids, auth_ids

    async def state_ids(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        pdu_ids, auth_ids = await self._state_before(origin, room_id, event_id)
        return {"pdu_ids": pdu_ids, "auth_chain_ids": auth_ids}

    async def state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        pdu_ids, auth_ids = await self._state_before(origin, room_id, event_id)
        pdus = await self.events.get_events_ordered(pdu_ids)
        chain = await self._events_by_depth(auth_ids)
        return {"pdus": [pdu_of(s) for s in pdus], "auth_chain": [pdu_of(s) for s in chain]}

    async def _events_by_depth(self, event_ids: Sequence[str] | set[str]) -> list[StoredEvent]:
        found = await self.events.get_events(sorted(event_ids))
        return sorted(found.values(), key=lambda s: (s.event.depth, s.event_id))

    # -- timestamps --------------------------------------------------------------------------------

    async def timestamp_to_event(
        self, origin: str, room_id: str, ts: int, *, forwards: bool
    ) -> dict[str, Any]:
        """The closest event at/after (forwards) or at/before `ts` that the origin may see, from
        what this server holds."""
        await self.access.readable_room(origin, room_id)
        after_key: tuple[int, int] | None = None
        for _ in range(TIMESTAMP_BATCHES):
            rows = await self.timeline.list_by_timestamp(
                room_id, ts, forwards=forwards, upto=MAX_POSITION, after_key=after_key, limit=TIMESTAMP_BATCH
            )
            loaded = await self.events.get_events_ordered([r.event_id for r in rows])
            visible = await self.access.visible(origin, loaded)
            for row in rows:
                if row.event_id in visible:
                    return {"event_id": row.event_id, "origin_server_ts": row.origin_server_ts}
            if len(rows) < TIMESTAMP_BATCH:
                break
            after_key = (rows[-1].origin_server_ts, rows[-1].stream_ordering)
        direction = "forward" if forwards else "backward"
        raise not_found(f"Unable to find event from {ts} in {direction} direction")
