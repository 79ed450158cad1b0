"""The inbound event pipeline: a PDU from another server, checked, placed in the DAG and persisted.

server-server-api.md "Checks performed on receipt of a PDU". For each new event:

1. `check_pdu` (format, signatures, content hash -> redacted);
2. its auth events must be known: missing ones come from the sending server (`/event_auth`), are
   checked the same way and stored as OUTLIERs (each authorised against its own auth events);
3. auth against its auth events (`check_auth_events` + `check_auth_rules`): failure -> rejected;
4. the state before it: the state after each prev event (stored state groups), resolved with v2
   when there are several. Missing prev events are first asked for with `/get_missing_events`
   (bounded: `GapLimits`); prev events still missing get their state from `/state_ids` (+ `/event`
   for what we lack, or `/state` when that is a lot), stored as outliers;
5. auth against the state before it: failure -> rejected;
6. auth against the room's current state: failure -> soft-failed (stored, not in the timeline, the
   forward extremities unchanged; as Synapse);
7. `EventPersister.persist([EventContext(kind=REMOTE_NEW, state_before=...)])`. Rejected events
   are stored with their reason, never in state or timeline.

Everything for one room runs under that room's lock, so concurrent transactions cannot race on
the room's DAG. Rooms proceed in parallel.

API (used by /send, and by other parts of the server):

- `on_receive_pdu(origin, pdu) -> Event`: a live PDU pushed to us (raises MatrixError to report
  a per-PDU error; an already known event is returned without being processed again);
- `backfill(room_id, servers, limit) -> list[Event]`: history before our oldest events, pulled
  with `/backfill` and stored as BACKFILLED; `backfill_for_client(room_id, limit) -> bool` picks
  the servers (those of the joined members) and is what client /messages calls when paging past
  the start of our history;
- `persist_outliers(origin, room_id, pdus) -> dict[str, Event]`: check and store events known
  only by id (auth chains, state from a remote server), e.g. from a send_join response.

An event held only as an outlier (an auth event, or state fetched from another server) that later
arrives live, through gap filling or through backfill takes its place in the DAG then (its row is
updated in place, as Synapse "de-outliers" it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Final

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.core.ids import server_of
from homeserver.crypto.keyring import Keyring
from homeserver.events import constants as c
from homeserver.events.auth import (
    CREATE_KEY,
    AuthError,
    auth_types_for_event,
    check_auth_events,
    check_auth_rules,
)
from homeserver.events.context import EventContext, EventKind, StateKey
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.federation.acl import server_allowed
from homeserver.federation.pdu_checks import check_pdu
from homeserver.federation.remote_events import EventSource, RemoteFetchError
from homeserver.persist.persister import EventPersister
from homeserver.state.current import RoomSnapshot
from homeserver.state.resolution import StateResolver, merge_unconflicted
from homeserver.state.service import StateService
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.federation_inbound import InboundFederationStore
from homeserver.storage.stores.state import StateStore

logger = logging.getLogger(__name__)

SERVER_ACL: Final = "m.room.server_acl"
# A client waiting on /messages gives up on backfill after this many seconds.
CLIENT_BACKFILL_TIMEOUT: Final = 10.0
# Checking a PDU (canonical JSON, hashes, ed25519) is CPU work: hand the loop back this often when
# checking a long list (a /state response may carry thousands).
YIELD_EVERY: Final = 25


@dataclass(frozen=True, slots=True)
class GapLimits:
    # /get_missing_events: events asked for per received PDU (Synapse asks for 10).
    missing_events_limit: int = 10
    # ... and how far below our shallowest forward extremity they may go.
    depth_window: int = 50
    # Prev events whose state we fetch with /state_ids for one received PDU.
    max_state_fetches: int = 3
    # Above this many unknown events in a remote state, fetch /state in one go instead of /event
    # per id.
    max_individual_fetches: int = 50
    # Concurrent /event requests.
    fetch_concurrency: int = 5
    # /backfill: the most events asked for at once.
    max_backfill: int = 100


class EventRejected(MatrixError):
    """The event was stored as rejected (reported per PDU, never a request failure)."""

    def __init__(self, reason: str) -> None:
        super().__init__(403, "M_FORBIDDEN", reason)


def _not_processable(msg: str) -> MatrixError:
    return MatrixError(400, "M_UNKNOWN", msg)


class _Budget:
    def __init__(self, state_fetches: int) -> None:
        self.state_fetches = state_fetches


class FederationEventHandler:
    def __init__(
        self,
        *,
        server_name: str,
        persister: EventPersister,
        state: StateService,
        events: EventStore,
        groups: StateStore,
        store: InboundFederationStore,
        resolver: StateResolver,
        keyring: Keyring,
        remote: EventSource,
        clock: Clock,
        limits: GapLimits | None = None,
    ) -> None:
        self.server_name = server_name
        self.persister = persister
        self.state = state
        self.events = events
        self.groups = groups
        self.store = store
        self.resolver = resolver
        self.keyring = keyring
        self.remote = remote
        self.clock = clock
        self.limits = limits or GapLimits()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    # -- per-room serialisation ------------------------------------------------------------------

    @asynccontextmanager
    async def room_lock(self, room_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(room_id, (asyncio.Lock(), 0))
        self._locks[room_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[room_id]
            if users <= 1:
                del self._locks[room_id]
            else:
                self._locks[room_id] = (lock, users - 1)

    # -- entry points ----------------------------------------------------------------------------

    async def room_for_pdu(self, pdu: Mapping[str, Any]) -> tuple[RoomSnapshot, RoomVersion]:
        """The room a PDU claims to be in, when we know it; raises MatrixError otherwise."""
        room_id = pdu.get("room_id")
        if not isinstance(room_id, str):
            raise MatrixError(400, "M_BAD_JSON", "PDU has no room_id")
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        return snapshot, snapshot.version

    def _we_are_in(self, snapshot: RoomSnapshot) -> bool:
        suffix = ":" + self.server_name
        return any(m == c.JOIN and u.endswith(suffix) for u, m in snapshot.memberships.items())

    @staticmethod
    def check_acl(server: str, snapshot: RoomSnapshot) -> None:
        acl = snapshot.get(SERVER_ACL)
        if acl is not None and not server_allowed(server, acl.content):
            raise MatrixError(403, "M_FORBIDDEN", f"Server {server} is banned from this room by its ACL")

    async def on_receive_pdu(self, origin: str, pdu: Mapping[str, Any]) -> Event:
        """Process a live PDU from `origin`; returns the event (possibly redacted) once stored.

        Raises MatrixError: the room is unknown or we are not in it, the origin or sender's server
        is denied by the room's ACL, the PDU fails its checks, its auth events or prev state cannot
        be obtained, or `EventRejected` when it was stored as rejected.
        """
        snapshot, version = await self.room_for_pdu(pdu)
        room_id = snapshot.room_id
        if not self._we_are_in(snapshot):
            raise MatrixError(403, "M_FORBIDDEN", "This server is not in the room")
        self.check_acl(origin, snapshot)
        event = await check_pdu(pdu, version, self.keyring)
        if event.room_id != room_id:
            raise MatrixError(400, "M_BAD_JSON", "Event is for another room")
        self.check_acl(server_of(event.sender), snapshot)
        async with self.room_lock(room_id):
            stored = await self.events.get_event(event.event_id)
            if stored is not None and not stored.outlier:
                return event
            budget = _Budget(self.limits.max_state_fetches)
            await self._fill_gap(origin, event, budget)
            kind = await self._live_kind(event, stored is not None)
            ctx = await self._context_for(origin, event, kind, {}, budget)
            await self.persister.persist([replace(ctx, replaces_outlier=stored is not None)])
        if ctx.rejected_reason is not None:
            raise EventRejected(ctx.rejected_reason)
        return event

    async def place_outlier_prevs(self, origin: str, event: Event) -> None:
        """Before our own join to a room we left is persisted: prev events of `event` held here
        only as outliers (typically the invite that brought us back, received out of band) take
        their place in the timeline as live events now, so they come before the join in stream
        order. Left as outliers, backfill would later give them the negative orderings of
        history older than anything we hold, putting the invite before the room's creation in
        /messages. Best effort: an event that cannot be processed stays an outlier."""
        stored = await self.events.get_events(list(event.prev_event_ids))
        outliers = [s.event for s in stored.values() if s.outlier and s.event.room_id == event.room_id]
        if not outliers or await self.state.get(event.room_id) is None:
            return
        async with self.room_lock(event.room_id):
            budget = _Budget(self.limits.max_state_fetches)
            for outlier in sorted(outliers, key=lambda e: (e.depth, e.event_id)):
                try:
                    await self._fill_gap(origin, outlier, budget)
                    ctx = await self._context_for(origin, outlier, EventKind.REMOTE_NEW, {}, budget)
                    await self.persister.persist([replace(ctx, replaces_outlier=True)])
                except MatrixError as exc:
                    logger.info("could not place outlier %s: %s", outlier.event_id, exc.error)

    async def _live_kind(self, event: Event, was_outlier: bool) -> EventKind:
        """REMOTE_NEW, unless the event was an outlier that events we hold already follow: it is
        then history behind them (BACKFILLED: neither a forward extremity nor a change of the
        current state, which its successors' state already includes)."""
        if was_outlier and await self.store.has_children(event.event_id):
            return EventKind.BACKFILLED
        return EventKind.REMOTE_NEW

    # -- gap filling -----------------------------------------------------------------------------

    async def _missing_prevs(
        self, prev_ids: Sequence[str], pending: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Prev events we cannot take the state after from: not stored, or stored as outliers."""
        candidates = [p for p in prev_ids if pending is None or p not in pending]
        found = await self.events.get_events(candidates)
        return [p for p in candidates if p not in found or found[p].outlier]

    async def _fill_gap(self, origin: str, event: Event, budget: _Budget) -> None:
        """Ask `origin` for the events between our forward extremities and `event`, and process
        those it returns (oldest first, each without further gap filling)."""
        if not await self._missing_prevs(event.prev_event_ids):
            return
        snapshot = await self.state.get(event.room_id)
        if snapshot is None:
            return
        tips = await self.events.get_events(list(snapshot.extremities))
        shallowest = min((s.event.depth for s in tips.values()), default=snapshot.depth)
        try:
            pdus = await self.remote.get_missing_events(
                origin,
                event.room_id,
                list(snapshot.extremities),
                [event.event_id],
                limit=self.limits.missing_events_limit,
                min_depth=max(0, shallowest - self.limits.depth_window),
            )
        except RemoteFetchError as exc:
            logger.info("get_missing_events for %s from %s failed: %s", event.event_id, origin, exc)
            return
        pulled: list[Event] = []
        for i, pdu in enumerate(pdus):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # thousands of signature checks: let others run
            try:
                pulled_event = await check_pdu(pdu, snapshot.version, self.keyring)
            except MatrixError as exc:
                logger.info("dropping a missing event from %s: %s", origin, exc.error)
                continue
            if pulled_event.room_id == event.room_id and pulled_event.event_id != event.event_id:
                pulled.append(pulled_event)
        known = await self.events.get_events([e.event_id for e in pulled])
        for pulled_event in sorted(pulled, key=lambda e: (e.depth, e.event_id)):
            existing = known.get(pulled_event.event_id)
            if existing is not None and not existing.outlier:
                continue
            try:
                kind = await self._live_kind(pulled_event, existing is not None)
                ctx = await self._context_for(origin, pulled_event, kind, {}, budget)
                await self.persister.persist([replace(ctx, replaces_outlier=existing is not None)])
            except MatrixError as exc:
                logger.info("could not process missing event %s: %s", pulled_event.event_id, exc.error)

    # -- building the context --------------------------------------------------------------------

    async def _context_for(
        self,
        origin: str,
        event: Event,
        kind: EventKind,
        pending: dict[str, tuple[Event, dict[StateKey, str]]],
        budget: _Budget,
    ) -> EventContext:
        """The checked context of a new (REMOTE_NEW or BACKFILLED) event. `pending` holds events
        built but not yet persisted (a backfill batch) with the state after each."""
        version = event.room_version
        pending_events = {k: v[0] for k, v in pending.items()}
        auth_events = await self._auth_events_for(origin, event, pending_events)
        create = await self._create_event(event, auth_events, pending_events)

        rejected_reason: str | None = None
        try:
            rejected_auth = await self.groups.rejected_event_ids(list(auth_events))
            auth_state = check_auth_events(
                version, event, auth_events.values(), rejected_event_ids=rejected_auth, create_event=create
            )
            check_auth_rules(version, event, auth_state)
        except AuthError as exc:
            rejected_reason = f"auth events: {exc.reason}"

        state_before, group_before = await self._state_before(origin, event, pending, budget)
        if rejected_reason is None:
            try:
                await self._check_against(event, state_before, pending_events)
            except AuthError as exc:
                rejected_reason = f"state before: {exc.reason}"

        soft_failed = False
        if rejected_reason is None and kind is EventKind.REMOTE_NEW and group_before is None:
            snapshot = await self.state.get(event.room_id)
            if snapshot is not None:
                current = {k: e.event_id for k, e in snapshot.state.items()}
                if current != state_before:
                    # As Synapse: the current state resolved with the state before the event, so
                    # what its own branch established (a join we only learnt from /state_ids)
                    # counts, and what the rest of the room did since (a ban) wins as it would.
                    resolved = await self._resolve_pair(event, current, state_before, pending_events)
                    try:
                        await self._check_against(event, resolved, pending_events)
                    except AuthError as exc:
                        logger.info("soft-failing %s: %s", event.event_id, exc.reason)
                        soft_failed = True
        if rejected_reason is not None:
            logger.info("rejecting %s from %s: %s", event.event_id, origin, rejected_reason)
        return EventContext(
            event,
            kind,
            state_before,
            state_group_before=group_before,
            rejected_reason=rejected_reason,
            soft_failed=soft_failed,
        )

    async def _resolve_pair(
        self,
        event: Event,
        current: Mapping[StateKey, str],
        state_before: Mapping[StateKey, str],
        pending: Mapping[str, Event],
    ) -> dict[StateKey, str]:
        sets = [current, state_before]
        merged = merge_unconflicted(sets)
        if merged is not None:
            return merged

        async def lookup(ids: Sequence[str]) -> Mapping[str, Event]:
            return await self._lookup(ids, pending)

        return await self.resolver.resolve(event.room_version, event.room_id, sets, lookup)

    async def _create_event(
        self, event: Event, auth_events: Mapping[str, Event], pending: Mapping[str, Event]
    ) -> Event | None:
        """The room's create event for v12+ auth checks (not among the auth events there)."""
        if event.room_version.auth_events_include_create or event.type == c.CREATE:
            return None
        create_id = "$" + event.room_id[1:]
        if create_id in pending:
            return pending[create_id]
        stored = await self.events.get_event(create_id)
        if stored is None:
            raise _not_processable("The room's create event is unknown")
        return stored.event

    async def _check_against(
        self, event: Event, state: Mapping[StateKey, str], pending: Mapping[str, Event]
    ) -> None:
        """Auth rules against a state map (ids): the entries the event's auth selection picks."""
        version = event.room_version
        keys = auth_types_for_event(
            version, type=event.type, sender=event.sender, state_key=event.state_key, content=event.content
        )
        keys = list(dict.fromkeys([*keys, CREATE_KEY]))
        ids = [state[k] for k in keys if k in state]
        found = await self._lookup(ids, pending)
        auth_state = {k: found[state[k]] for k in keys if k in state and state[k] in found}
        check_auth_rules(version, event, auth_state)

    async def _lookup(self, event_ids: Sequence[str], pending: Mapping[str, Event]) -> dict[str, Event]:
        found = {e: pending[e] for e in event_ids if e in pending}
        rest = [e for e in event_ids if e not in found]
        if rest:
            for event_id, stored in (await self.events.get_events(rest)).items():
                found[event_id] = stored.event
        return found

    # -- auth events -----------------------------------------------------------------------------

    async def _auth_events_for(
        self, origin: str, event: Event, pending: Mapping[str, Event]
    ) -> dict[str, Event]:
        """The event's auth events, fetching missing ones from `origin` (stored as outliers)."""
        wanted = list(event.auth_event_ids)
        found = await self._lookup(wanted, pending)
        missing = [e for e in wanted if e not in found]
        if missing:
            try:
                chain = await self.remote.get_event_auth(origin, event.room_id, event.event_id)
            except RemoteFetchError as exc:
                raise _not_processable(
                    f"Missing auth events, and {origin} could not give them: {exc}"
                ) from exc
            await self.persist_outliers(origin, event.room_id, chain)
            found = await self._lookup(wanted, pending)
            still = [e for e in wanted if e not in found]
            if still:
                raise _not_processable(f"Auth events {still[:3]} are unknown")
        return found

    async def persist_outliers(
        self, origin: str, room_id: str, pdus: Iterable[Mapping[str, Any]]
    ) -> dict[str, Event]:
        """Check events known only by id and store the new ones as OUTLIERs, each authorised
        against its own auth events (rejected ones are stored as rejected). Events that fail
        `check_pdu`, are in another room, or whose auth events are missing are dropped. Returns the
        events now stored, by id (already known ones included)."""
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        version = snapshot.version
        checked: dict[str, Event] = {}
        for i, pdu in enumerate(pdus):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # thousands of signature checks: let others run
            try:
                event = await check_pdu(pdu, version, self.keyring)
            except MatrixError as exc:
                logger.info("dropping an event from %s: %s", origin, exc.error)
                continue
            if event.room_id == room_id:
                checked[event.event_id] = event
        known = {k: v.event for k, v in (await self.events.get_events(list(checked))).items()}
        new = {k: v for k, v in checked.items() if k not in known}
        # Every auth event any of them cites: stored ones, and the rejected among them.
        cited = {a for e in new.values() for a in e.auth_event_ids if a not in new}
        stored_auth = {k: v.event for k, v in (await self.events.get_events(sorted(cited))).items()}
        rejected = await self.groups.rejected_event_ids(sorted(stored_auth))
        available: dict[str, Event] = {**stored_auth}
        contexts: list[EventContext] = []
        for event in _auth_order(new):
            if not all(a in available for a in event.auth_event_ids):
                logger.info("dropping %s: its auth events are unknown", event.event_id)
                continue
            reason: str | None = None
            try:
                create = None
                if not version.auth_events_include_create and event.type != c.CREATE:
                    create_id = "$" + room_id[1:]
                    create = available.get(create_id) or new.get(create_id)
                    if create is None:
                        stored_create = await self.events.get_event(create_id)
                        create = stored_create.event if stored_create is not None else None
                auth_state = check_auth_events(
                    version,
                    event,
                    [available[a] for a in event.auth_event_ids],
                    rejected_event_ids=rejected,
                    create_event=create,
                )
                check_auth_rules(version, event, auth_state)
            except AuthError as exc:
                reason = f"auth events: {exc.reason}"
                rejected.add(event.event_id)
            available[event.event_id] = event
            contexts.append(EventContext(event, EventKind.OUTLIER, {}, rejected_reason=reason))
        if contexts:
            await self.persister.persist(contexts)
        return {**known, **{ctx.event.event_id: ctx.event for ctx in contexts}}

    # -- state before an event --------------------------------------------------------------------

    async def _state_before(
        self,
        origin: str,
        event: Event,
        pending: dict[str, tuple[Event, dict[StateKey, str]]],
        budget: _Budget,
    ) -> tuple[dict[StateKey, str], int | None]:
        """The state before `event` as ids, and its state group when that is the room's current
        one."""
        if event.type == c.CREATE and not event.prev_event_ids:
            return {}, None
        snapshot = await self.state.get(event.room_id)
        if (
            snapshot is not None
            and snapshot.forks is None
            and tuple(event.prev_event_ids) == snapshot.extremities
        ):
            # The common case: the event extends our only tip, whose state is the current state
            # (no state group read, and the persister reuses the current group).
            return {k: e.event_id for k, e in snapshot.state.items()}, snapshot.state_group
        sets: list[Mapping[StateKey, str]] = []
        missing = await self._missing_prevs(event.prev_event_ids, pending)
        for prev_id in event.prev_event_ids:
            if prev_id in pending:
                sets.append(pending[prev_id][1])
            elif prev_id in missing:
                if budget.state_fetches <= 0:
                    raise _not_processable("Too many missing prev events to fetch the state of")
                budget.state_fetches -= 1
                sets.append(await self._remote_state_after(origin, event.room_id, prev_id))
            else:
                after = await self.state.state_ids_at_event(prev_id)
                if after is None:
                    raise _not_processable(f"No state known at prev event {prev_id}")
                sets.append(after)
        if not sets:
            raise _not_processable("Event has no prev events")
        if len(sets) == 1:
            return dict(sets[0]), None
        merged = merge_unconflicted(sets)
        if merged is not None:
            return merged, None
        pending_events = {k: v[0] for k, v in pending.items()}

        async def lookup(ids: Sequence[str]) -> Mapping[str, Event]:
            return await self._lookup(ids, pending_events)

        return await self.resolver.resolve(event.room_version, event.room_id, sets, lookup), None

    async def _remote_state_after(self, origin: str, room_id: str, event_id: str) -> dict[StateKey, str]:
        """The state after `event_id` as `origin` sees it: /state_ids (the state before it) plus the
        event itself when it is a state event; every event we lack is fetched and stored as an
        outlier."""
        try:
            ids = await self.remote.get_state_ids(origin, room_id, event_id)
        except RemoteFetchError as exc:
            raise _not_processable(f"Could not get the state at {event_id} from {origin}: {exc}") from exc
        wanted = list(dict.fromkeys([*ids.auth_chain_ids, *ids.state_ids, event_id]))
        have = await self.events.get_events(wanted)
        lacking = [e for e in wanted if e not in have]
        if len(lacking) > self.limits.max_individual_fetches:
            try:
                full = await self.remote.get_state(origin, room_id, event_id)
                prev_pdu = await self.remote.get_event(origin, event_id)
            except RemoteFetchError as exc:
                raise _not_processable(f"Could not get the state at {event_id} from {origin}: {exc}") from exc
            pdus = [*full.auth_chain, *full.pdus, prev_pdu]
        else:
            semaphore = asyncio.Semaphore(self.limits.fetch_concurrency)

            async def fetch(event_id: str) -> dict[str, Any] | None:
                async with semaphore:
                    try:
                        return await self.remote.get_event(origin, event_id)
                    except RemoteFetchError as exc:
                        logger.info("fetching %s from %s failed: %s", event_id, origin, exc)
                        return None

            fetched = await asyncio.gather(*(fetch(e) for e in lacking))
            pdus = [p for p in fetched if p is not None]
        stored = await self.persist_outliers(origin, room_id, pdus)
        for known_id, known in have.items():
            stored.setdefault(known_id, known.event)
        state: dict[StateKey, str] = {}
        for state_id in ids.state_ids:
            state_event = stored.get(state_id)
            if state_event is None or state_event.state_key is None:
                continue  # could not be fetched or checked: left out, as Synapse does
            state[(state_event.type, state_event.state_key)] = state_id
        prev = stored.get(event_id)
        if prev is None:
            raise _not_processable(f"Could not get prev event {event_id} from {origin}")
        if prev.state_key is not None and not await self.groups.rejected_event_ids([event_id]):
            state[(prev.type, prev.state_key)] = event_id
        return state

    # -- backfill --------------------------------------------------------------------------------

    async def backfill(self, room_id: str, servers: Sequence[str], limit: int) -> list[Event]:
        """Pull up to `limit` events older than our oldest ones from the first of `servers` that
        answers, and store them as BACKFILLED (accepted and rejected alike; rejected ones are
        never shown). Returns the events stored (not the rejected), newest first."""
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        limit = max(1, min(limit, self.limits.max_backfill))
        async with self.room_lock(room_id):
            extremities = await self.store.backward_extremities(room_id, 20)
            if not extremities:
                return []
            for server in servers:
                if server == self.server_name:
                    continue
                try:
                    self.check_acl(server, snapshot)
                    pdus = await self.remote.backfill(server, room_id, extremities, limit)
                except (RemoteFetchError, MatrixError) as exc:
                    logger.info("backfill of %s from %s failed: %s", room_id, server, exc)
                    continue
                stored = await self._persist_backfilled(server, snapshot.version, room_id, pdus)
                if stored:
                    return stored
        return []

    async def backfill_for_client(self, room_id: str, limit: int) -> bool:
        """For /messages at the start of our history: backfill from the servers of the room's
        joined members (most members first), within CLIENT_BACKFILL_TIMEOUT. True when events
        were stored."""
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            return False
        counts: dict[str, int] = {}
        for user_id, membership in snapshot.memberships.items():
            server = server_of(user_id)
            if membership == c.JOIN and server and server != self.server_name:
                counts[server] = counts.get(server, 0) + 1
        if not counts:
            return False
        servers = sorted(counts, key=lambda s: (-counts[s], s))
        try:
            async with asyncio.timeout(CLIENT_BACKFILL_TIMEOUT):
                return bool(await self.backfill(room_id, servers, limit))
        except TimeoutError:
            logger.info("backfill of %s for a client timed out", room_id)
            return False

    async def _persist_backfilled(
        self, origin: str, version: RoomVersion, room_id: str, pdus: Sequence[Mapping[str, Any]]
    ) -> list[Event]:
        checked: dict[str, Event] = {}
        for i, pdu in enumerate(pdus):
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # thousands of signature checks: let others run
            try:
                event = await check_pdu(pdu, version, self.keyring)
            except MatrixError as exc:
                logger.info("dropping a backfilled event from %s: %s", origin, exc.error)
                continue
            if event.room_id == room_id:
                checked[event.event_id] = event
        known = await self.events.get_events(list(checked))
        # Outliers among them take their place in the DAG now.
        outliers = {e for e, stored in known.items() if stored.outlier}
        new = [e for e in checked.values() if e.event_id not in known or e.event_id in outliers]
        budget = _Budget(self.limits.max_state_fetches)
        pending: dict[str, tuple[Event, dict[StateKey, str]]] = {}
        contexts: list[EventContext] = []
        for event in sorted(new, key=lambda e: (e.depth, e.event_id)):
            try:
                ctx = await self._context_for(origin, event, EventKind.BACKFILLED, pending, budget)
            except MatrixError as exc:
                logger.info("could not process backfilled event %s: %s", event.event_id, exc.error)
                continue
            after = dict(ctx.state_before)
            if event.state_key is not None and ctx.rejected_reason is None:
                after[(event.type, event.state_key)] = event.event_id
            pending[event.event_id] = (event, after)
            contexts.append(replace(ctx, replaces_outlier=event.event_id in outliers))
        if not contexts:
            return []
        # Newest first: backfilled events take decreasing stream orderings, so the oldest event
        # ends up with the lowest one (what /messages pages through).
        contexts.reverse()
        await self.persister.persist(contexts)
        return [ctx.event for ctx in contexts if ctx.rejected_reason is None]


def _auth_order(events: Mapping[str, Event]) -> list[Event]:
    """`events` with each one after the auth events it cites among them (depth, then id, breaks
    ties; cycles, only possible in forged input, are broken the same way)."""
    ordered: list[Event] = []
    placed: set[str] = set()
    remaining = sorted(events.values(), key=lambda e: (e.depth, e.event_id))
    while remaining:
        progress = False
        later: list[Event] = []
        for event in remaining:
            if all(a in placed or a not in events for a in event.auth_event_ids):
                ordered.append(event)
                placed.add(event.event_id)
                progress = True
            else:
                later.append(event)
        if not progress:
            ordered.extend(later)
            break
        remaining = later
    return ordered
