"""Reading a room's history: /messages, /context, /event, /relations, /threads and
/timestamp_to_event, with bundled aggregations (spec: "Aggregations of child events").

Every read asks `RoomAccess` who may read the room and up to where (a user who left reads up to
their leave), and passes every event it returns through `VisibilityService.filter_events`.

Pagination tokens are `PaginationToken`s (`s<n>`): backwards from `s<n>` walks orderings <= n,
forwards walks orderings > n. A page is filled by scanning the room's events in batches and keeping
the visible, filter-matching ones; the scan only visits the stream ranges history visibility could
let the user see (`visible_ranges`), so a user who joined a `joined` room late does not scan the
history before their join, and it stops after `MAX_SCAN_BATCHES` batches so one request stays
bounded (the client then gets a short or empty chunk with an `end` to continue from).

History fetched from other servers (backfill) has negative stream orderings, below every live event
(`s-<n>` tokens). /messages scans it too; its visibility is decided from the state before each such
event (`VisibilityService`), and when a backwards page reaches the start of what this server has,
`backfill` (the federation handler's, set by the container) is asked for more and the page is read
again.

Bundled aggregations (`unsigned.m.relations`: `m.replace`, `m.thread`, `m.reference`; never
`m.annotation`, never on state events) are added here for the endpoints of this service only; the
/sync path does not pay for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core.errors import MatrixError, not_found
from homeserver.core.tokens import PaginationToken
from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.events.filter import RoomEventFilter
from homeserver.services.room_access import ReadAccess, RoomAccess
from homeserver.services.serialize import EventSerializer
from homeserver.services.visibility import VisibilityService
from homeserver.state.current import RoomSnapshot
from homeserver.storage.stores.events import EventStore, StoredEvent, relation_of
from homeserver.storage.stores.timeline import MAX_POSITION, EventPushdown, PageRow, TimelineStore

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
RELATIONS_DEFAULT_LIMIT = 5
THREADS_DEFAULT_LIMIT = 5
THREADS_MAX_LIMIT = 100
# How many hops `recurse=true` follows (the spec asks for at least 3).
RECURSION_DEPTH = 3
MAX_SCAN_BATCHES = 20
MAX_BATCH = 500

REPLACE = "m.replace"
THREAD = "m.thread"
REFERENCE = "m.reference"
ENCRYPTED = "m.room.encrypted"

Range = tuple[int, int]  # (exclusive low, inclusive high) stream orderings
StateIdsAt = Callable[[RoomSnapshot, int], Awaitable[dict[tuple[str, str], str]]]
History = Sequence[tuple[int, str | None]]


# -- pure helpers -------------------------------------------------------------------------------------


def _segments(history: History) -> list[tuple[int, int, str | None]]:
    """(low, high, value): the value an event at low < pos <= high sees (the latest change at a
    position strictly before it; None before the first change)."""
    segments: list[tuple[int, int, str | None]] = []
    start: int = 0
    value: str | None = None
    for pos, new in history:
        if pos > start:
            segments.append((start, pos, value))
        start, value = pos, new
    segments.append((start, MAX_POSITION, value))
    return segments


def visible_ranges(hv_history: History, member_history: History) -> list[Range]:
    """The stream ranges in which an event may be visible to a user, given the room's
    history-visibility history and the user's membership history (both oldest first).

    A superset of what `VisibilityService.filter_events` lets through (it still decides per event):
    the user's own membership events; world_readable periods; `shared` periods before the user's
    last join; periods the user was joined; `invited` periods while the user was invited.
    """
    hv_segments = _segments(hv_history)
    member_segments = _segments(member_history)
    joins = [pos for pos, m in member_history if m == c.JOIN]
    last_join = joins[-1] if joins else None
    ranges: list[Range] = []
    for low, high, value in hv_segments:
        hv = value or "shared"
        if hv == "world_readable":
            ranges.append((low, high))
        elif hv == "shared" and last_join is not None:
            top = min(high, last_join - 1)
            if top > low:
                ranges.append((low, top))
        elif hv == "invited":
            for m_low, m_high, membership in member_segments:
                if membership == c.INVITE and min(high, m_high) > max(low, m_low):
                    ranges.append((max(low, m_low), min(high, m_high)))
    ranges.extend((low, high) for low, high, m in member_segments if m == c.JOIN)
    ranges.extend((pos - 1, pos) for pos, _ in member_history)
    ranges.sort()
    merged: list[Range] = []
    for low, high in ranges:
        if merged and low <= merged[-1][1]:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def pushdown_of(flt: RoomEventFilter) -> EventPushdown | None:
    """The part of a filter the database can apply exactly: exact types/senders and contains_url.
    Wildcard type patterns stay in Python (which re-checks every event anyway)."""
    if flt.is_unconstrained:
        return None
    types = flt.types if flt.types is not None and not any("*" in t for t in flt.types) else None
    not_types = tuple(t for t in flt.not_types or () if "*" not in t) or None
    return EventPushdown(
        types=types,
        not_types=not_types,
        senders=flt.senders,
        not_senders=flt.not_senders or None,
        contains_url=flt.contains_url,
    )


def is_valid_edit(original: Event, edit: Event) -> bool:
    """Spec "Validity of replacement events" (the room check is done by the query)."""
    if original.state_key is not None or edit.state_key is not None:
        return False
    if edit.sender != original.sender or edit.type != original.type:
        return False
    if relation_of(original)[1] == REPLACE:
        return False
    # An encrypted edit carries m.new_content inside the ciphertext, which the server cannot see.
    return edit.type == ENCRYPTED or isinstance(edit.content.get("m.new_content"), dict)


# Below every backfilled event: where a read with no lower bound starts.
HISTORY_FLOOR = -MAX_POSITION
# (room id, how many events) -> whether any were stored
Backfill = Callable[[str, int], Awaitable[bool]]


def _token(value: str | None) -> int | None:
    return PaginationToken.parse(value).stream if value else None


@dataclass(slots=True)
class _Scan:
    events: list[StoredEvent]
    # Where the next page starts (backwards: orderings <= position; forwards: > position).
    position: int
    exhausted: bool


# -- the service ----------------------------------------------------------------------------------------


class TimelineService:
    def __init__(
        self,
        store: TimelineStore,
        events: EventStore,
        access: RoomAccess,
        visibility: VisibilityService,
        serializer: EventSerializer,
        *,
        state_ids_at: StateIdsAt,
        current_position: Callable[[], int],
    ) -> None:
        self.store = store
        self.events = events
        self.access = access
        self.visibility = visibility
        self.serializer = serializer
        self.state_ids_at = state_ids_at
        self.current_position = current_position
        # Pulls history from other servers when a /messages page runs out (federation).
        self.backfill: Backfill | None = None
        # (room_id, ts, forwards) -> {event_id, origin_server_ts} from another server, or None.
        self.remote_timestamp: Callable[[str, int, bool], Awaitable[dict[str, Any] | None]] | None = None

    # -- access and visibility ---------------------------------------------------------------------

    def _ceiling(self, access: ReadAccess) -> int:
        current = self.current_position()
        return current if access.upto is None else min(current, access.upto)

    async def _access_or_404(self, user_id: str, room_id: str) -> ReadAccess:
        """For endpoints whose spec answers 404 when the user may not read the event."""
        try:
            return await self.access.check_can_read(user_id, room_id)
        except MatrixError as err:
            if err.status == 403:
                raise not_found("Event not found") from err
            raise

    async def _read_access(self, user_id: str, room_id: str, privileged: bool) -> ReadAccess:
        if not privileged:
            return await self.access.check_can_read(user_id, room_id)
        return ReadAccess(await self.access.snapshot(room_id), None, None)

    async def _visible_event(
        self, user_id: str, room_id: str, event_id: str, ceiling: int, privileged: bool = False
    ) -> StoredEvent:
        stored = await self.events.get_event(event_id)
        if (
            stored is None
            or stored.outlier
            or stored.event.room_id != room_id
            or stored.stream_ordering > ceiling
        ):
            raise not_found("Event not found")
        if privileged:
            return stored
        # The filter may hand back a pruned copy (erased sender): serve that one.
        visible = await self.visibility.filter_events(user_id, room_id, [stored])
        if not visible:
            raise not_found("Event not found")
        return visible[0]

    async def _ranges(self, user_id: str, room_id: str) -> list[Range]:
        hv = await self.visibility._history(room_id, c.HISTORY_VISIBILITY, "", "history_visibility")
        members = await self.visibility._history(room_id, c.MEMBER, user_id, "membership")
        return visible_ranges(hv, members)

    # -- the page scanner ------------------------------------------------------------------------

    async def _walk(
        self,
        user_id: str,
        room_id: str,
        spans: Sequence[Range],
        *,
        lower: int,
        upper: int,
        backwards: bool,
        limit: int,
        fetch: Callable[[int, int, int], Awaitable[list[PageRow]]],
        keep: Callable[[list[StoredEvent]], list[StoredEvent]] | None = None,
        privileged: bool = False,
    ) -> _Scan:
        """Walk `spans` (sub-ranges of (lower, upper], in walk order) batch by batch, keeping the
        visible events (and those `keep` accepts) until `limit` are found.
        `fetch(after, upto, size)` returns the next rows of a span in walk order."""
        if limit <= 0:
            return _Scan([], upper if backwards else lower, lower >= upper)
        collected: list[StoredEvent] = []
        batches = 0
        for index, (low, high) in enumerate(spans):
            last_span = index == len(spans) - 1
            while low < high:
                if batches >= MAX_SCAN_BATCHES:
                    return _Scan(collected, high if backwards else low, False)
                batches += 1
                size = min(max(2 * (limit - len(collected)), 20), MAX_BATCH)
                rows = await fetch(low, high, size)
                final_batch = len(rows) < size
                loaded = await self.events.get_events([r.event_id for r in rows])
                candidates = [loaded[r.event_id] for r in rows if r.event_id in loaded]
                visible = (
                    candidates
                    if privileged
                    else await self.visibility.filter_events(user_id, room_id, candidates)
                )
                if keep is not None:
                    visible = keep(visible)
                accepted = {s.event_id: s for s in visible}
                for i, row in enumerate(rows):
                    stored = accepted.get(row.event_id)
                    if stored is None:
                        continue
                    collected.append(stored)
                    if len(collected) >= limit:
                        if last_span and final_batch and i == len(rows) - 1:
                            return _Scan(collected, lower if backwards else upper, True)
                        position = row.stream_ordering - 1 if backwards else row.stream_ordering
                        return _Scan(collected, position, False)
                if final_batch:
                    break
                if backwards:
                    high = rows[-1].stream_ordering - 1
                else:
                    low = rows[-1].stream_ordering
        return _Scan(collected, lower if backwards else upper, True)

    async def _scan(
        self,
        user_id: str,
        room_id: str,
        *,
        lower: int,
        upper: int,
        backwards: bool,
        limit: int,
        flt: RoomEventFilter,
        privileged: bool = False,
    ) -> _Scan:
        """Visible, matching room events with lower < ordering <= upper, walking from `upper` down
        (backwards) or from `lower` up, until `limit` are found."""
        if limit > 0 and (flt.blocks_all or lower >= upper):
            return _Scan([], lower if backwards else upper, True)
        # A server admin (admin API) reads the whole room, whatever its history visibility.
        ranges = [(lower, upper)] if privileged else await self._ranges(user_id, room_id)
        if not privileged and lower < 0:
            # Backfilled history: every event there is checked against the state before it.
            ranges = [(lower, 0), *ranges]
        spans = [
            (max(low, lower), min(high, upper)) for low, high in ranges if min(high, upper) > max(low, lower)
        ]
        if backwards:
            spans.reverse()
        pushdown = pushdown_of(flt)

        async def fetch(after: int, upto: int, size: int) -> list[PageRow]:
            return await self.store.list_room_page(
                room_id, after=after, upto=upto, limit=size, newest_first=backwards, pushdown=pushdown
            )

        def keep(events: list[StoredEvent]) -> list[StoredEvent]:
            return [s for s in events if flt.matches_event(s.event, room_id)]

        return await self._walk(
            user_id,
            room_id,
            spans,
            lower=lower,
            upper=upper,
            backwards=backwards,
            limit=limit,
            fetch=fetch,
            keep=None if flt.is_unconstrained else keep,
            privileged=privileged,
        )

    # -- serialisation with bundled aggregations ----------------------------------------------------

    async def serialize(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        events: Sequence[StoredEvent],
        *,
        ceiling: int,
        bundle: bool = True,
        nested: bool = False,
    ) -> list[dict[str, Any]]:
        out = await self.serializer.serialize(events, user_id=user_id, device_id=device_id)
        if bundle and events:
            relations = await self.bundled_aggregations(
                user_id, device_id, room_id, events, ceiling=ceiling, nested=nested
            )
            for stored, serialized in zip(events, out, strict=True):
                bundled = relations.get(stored.event_id)
                if bundled:
                    serialized.setdefault("unsigned", {})["m.relations"] = bundled
        return out

    async def bundled_aggregations(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        events: Sequence[StoredEvent],
        *,
        ceiling: int,
        nested: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """event_id -> `m.relations` for the events that have aggregatable children.

        `nested` (a thread's latest_event) skips the thread summary: thread events cannot be roots.
        """
        targets = {s.event_id: s for s in events if s.event.state_key is None}
        if not targets:
            return {}
        ids = list(targets)
        children = await self.store.list_children(room_id, ids, (REPLACE, REFERENCE), upto=ceiling)
        loaded = await self.events.get_events_ordered([ch.event_id for ch in children])
        visible = {s.event_id: s for s in await self.visibility.filter_events(user_id, room_id, loaded)}
        result: dict[str, dict[str, Any]] = {}

        latest_edit: dict[str, StoredEvent] = {}
        references: dict[str, list[dict[str, str]]] = {}
        for child in children:
            stored = visible.get(child.event_id)
            if stored is None:
                continue
            parent = targets[child.relates_to_id]
            if child.rel_type == REFERENCE:
                references.setdefault(parent.event_id, []).append({"event_id": child.event_id})
            elif parent.redacted_by is None and is_valid_edit(parent.event, stored.event):
                best = latest_edit.get(parent.event_id)
                key = (stored.event.origin_server_ts, stored.event_id)
                if best is None or key > (best.event.origin_server_ts, best.event_id):
                    latest_edit[parent.event_id] = stored
        if latest_edit:
            edits = list(latest_edit.items())
            serialized = await self.serializer.serialize(
                [e for _, e in edits], user_id=user_id, device_id=device_id
            )
            for (parent_id, _), edit in zip(edits, serialized, strict=True):
                result.setdefault(parent_id, {})[REPLACE] = edit
        for parent_id, chunk in references.items():
            result.setdefault(parent_id, {})[REFERENCE] = {"chunk": chunk}
        if not nested:
            for root_id, summary in (
                await self._thread_summaries(user_id, device_id, room_id, targets, ceiling)
            ).items():
                result.setdefault(root_id, {})[THREAD] = summary
        return result

    async def _thread_summaries(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        roots: dict[str, StoredEvent],
        ceiling: int,
    ) -> dict[str, dict[str, Any]]:
        rows = await self.store.thread_summaries(room_id, list(roots), user_id, upto=ceiling)
        if not rows:
            return {}
        ids_at = await self.store.event_ids_at([r.latest_ordering for r in rows.values()])
        candidates = await self.events.get_events_ordered(
            [ids_at[r.latest_ordering] for r in rows.values() if r.latest_ordering in ids_at]
        )
        visible = {s.event_id: s for s in await self.visibility.filter_events(user_id, room_id, candidates)}
        latest: dict[str, StoredEvent] = {}
        for root_id, row in rows.items():
            found = visible.get(ids_at.get(row.latest_ordering, ""))
            if found is None:
                # The newest reply is hidden from this user: take the newest one they can see.
                page = await self.store.list_relations(
                    room_id,
                    root_id,
                    rel_type=THREAD,
                    event_type=None,
                    after=0,
                    upto=ceiling,
                    limit=50,
                    newest_first=True,
                )
                loaded = await self.events.get_events_ordered([p.event_id for p in page])
                seen = await self.visibility.filter_events(user_id, room_id, loaded)
                found = seen[0] if seen else None
            if found is not None:
                latest[root_id] = found
        if not latest:
            return {}
        order = list(latest.items())
        serialized = await self.serialize(
            user_id, device_id, room_id, [s for _, s in order], ceiling=ceiling, nested=True
        )
        out: dict[str, dict[str, Any]] = {}
        for (root_id, _), event in zip(order, serialized, strict=True):
            row = rows[root_id]
            out[root_id] = {
                "latest_event": event,
                "count": row.count,
                "current_user_participated": row.user_participated or roots[root_id].event.sender == user_id,
            }
        return out

    # -- GET /rooms/{roomId}/messages --------------------------------------------------------------

    async def get_messages(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        *,
        from_token: str | None,
        to_token: str | None,
        backwards: bool,
        limit: int,
        flt: RoomEventFilter,
        privileged: bool = False,
        backfill: bool = False,
    ) -> dict[str, Any]:
        """`backfill`: when a backwards page reaches the start of our history, ask other servers
        for more (client /messages)."""
        frm, to = _token(from_token), _token(to_token)
        access = await self._read_access(user_id, room_id, privileged)
        ceiling = self._ceiling(access)
        if backwards:
            upper = min(frm if frm is not None else ceiling, ceiling)
            lower = to if to is not None else HISTORY_FLOOR
            start = from_token or PaginationToken(upper).serialize()
        else:
            lower = frm if frm is not None else HISTORY_FLOOR
            upper = min(to if to is not None else ceiling, ceiling)
            start = from_token or PaginationToken(lower).serialize()
        scan = await self._scan(
            user_id,
            room_id,
            lower=lower,
            upper=upper,
            backwards=backwards,
            limit=limit,
            flt=flt,
            privileged=privileged,
        )
        if (
            backfill
            and backwards
            and to is None
            and self.backfill is not None
            and scan.exhausted
            and len(scan.events) < limit
            and await self.backfill(room_id, limit - len(scan.events))
        ):
            scan = await self._scan(
                user_id,
                room_id,
                lower=lower,
                upper=upper,
                backwards=backwards,
                limit=limit,
                flt=flt,
                privileged=privileged,
            )
        response: dict[str, Any] = {
            "chunk": await self.serialize(user_id, device_id, room_id, scan.events, ceiling=ceiling),
            "start": start,
        }
        if not scan.exhausted:
            response["end"] = PaginationToken(scan.position).serialize()
        if flt.lazy_load_members and scan.events:
            senders = sorted({s.event.sender for s in scan.events})
            at = scan.events[0].stream_ordering
            member_ids = await self.store.member_event_ids_at(room_id, senders, at)
            members = await self.events.get_events_ordered(member_ids)
            response["state"] = await self.serializer.serialize(members)
        return response

    # -- GET /rooms/{roomId}/event/{eventId} --------------------------------------------------------

    async def get_event(
        self, user_id: str, device_id: str | None, room_id: str, event_id: str
    ) -> dict[str, Any]:
        access = await self._access_or_404(user_id, room_id)
        ceiling = self._ceiling(access)
        stored = await self._visible_event(user_id, room_id, event_id, ceiling)
        return (await self.serialize(user_id, device_id, room_id, [stored], ceiling=ceiling))[0]

    # -- GET /rooms/{roomId}/context/{eventId} ------------------------------------------------------

    async def get_context(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        event_id: str,
        *,
        limit: int,
        flt: RoomEventFilter,
        privileged: bool = False,
    ) -> dict[str, Any]:
        access = await self._read_access(user_id, room_id, privileged)
        ceiling = self._ceiling(access)
        target = await self._visible_event(user_id, room_id, event_id, ceiling, privileged)
        pos = target.stream_ordering
        before_limit = limit // 2
        before = await self._scan(
            user_id,
            room_id,
            lower=0,
            upper=pos - 1,
            backwards=True,
            limit=before_limit,
            flt=flt,
            privileged=privileged,
        )
        after = await self._scan(
            user_id,
            room_id,
            lower=pos,
            upper=ceiling,
            backwards=False,
            limit=limit - before_limit,
            flt=flt,
            privileged=privileged,
        )
        # "The state of the room at the last event returned."
        state_at = after.events[-1].stream_ordering if after.events else pos
        state_ids = await self.state_ids_at(access.snapshot, state_at)
        if flt.lazy_load_members:
            senders = {s.event.sender for s in (*before.events, target, *after.events)}
            state_ids = {k: v for k, v in state_ids.items() if k[0] != c.MEMBER or k[1] in senders}
        state = [
            s
            for s in await self.events.get_events_ordered(sorted(state_ids.values()))
            if flt.matches_event(s.event, room_id)
        ]

        everything = [*before.events, target, *after.events]
        serialized = await self.serialize(user_id, device_id, room_id, everything, ceiling=ceiling)
        n_before = len(before.events)
        return {
            "start": PaginationToken(before.position).serialize(),
            "end": PaginationToken(after.position).serialize(),
            "events_before": serialized[:n_before],
            "event": serialized[n_before],
            "events_after": serialized[n_before + 1 :],
            "state": await self.serializer.serialize(state),
        }

    # -- GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]] -------------------------

    async def get_relations(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        event_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_token: str | None,
        to_token: str | None,
        backwards: bool,
        limit: int,
        recurse: bool | None,
    ) -> dict[str, Any]:
        frm, to = _token(from_token), _token(to_token)
        access = await self._access_or_404(user_id, room_id)
        ceiling = self._ceiling(access)
        await self._visible_event(user_id, room_id, event_id, ceiling)
        if backwards:
            lower, upper = (to if to is not None else 0), min(frm if frm is not None else ceiling, ceiling)
        else:
            lower, upper = (frm if frm is not None else 0), min(to if to is not None else ceiling, ceiling)
        depth = RECURSION_DEPTH if recurse else 1

        async def fetch(after: int, upto: int, size: int) -> list[PageRow]:
            return await self.store.list_relations(
                room_id,
                event_id,
                rel_type=rel_type,
                event_type=event_type,
                after=after,
                upto=upto,
                limit=size,
                newest_first=backwards,
                max_depth=depth,
            )

        spans = [(lower, upper)] if lower < upper else []
        scan = await self._walk(
            user_id, room_id, spans, lower=lower, upper=upper, backwards=backwards, limit=limit, fetch=fetch
        )
        response: dict[str, Any] = {
            "chunk": await self.serialize(user_id, device_id, room_id, scan.events, ceiling=ceiling)
        }
        if not scan.exhausted:
            response["next_batch"] = PaginationToken(scan.position).serialize()
        if from_token:
            response["prev_batch"] = from_token
        if recurse is not None:
            response["recursion_depth"] = depth
        return response

    # -- GET /v1/rooms/{roomId}/threads ------------------------------------------------------------

    async def get_threads(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        *,
        participated_only: bool,
        from_token: str | None,
        limit: int,
    ) -> dict[str, Any]:
        frm = _token(from_token)
        access = await self.access.check_can_read(user_id, room_id)
        ceiling = self._ceiling(access)
        before = frm if frm is not None else MAX_POSITION
        roots, next_before = await self._thread_roots(
            user_id,
            room_id,
            ceiling=ceiling,
            before=before,
            limit=limit,
            participant=user_id if participated_only else None,
        )
        response: dict[str, Any] = {
            "chunk": await self.serialize(user_id, device_id, room_id, roots, ceiling=ceiling)
        }
        if next_before is not None:
            response["next_batch"] = PaginationToken(next_before).serialize()
        return response

    async def _thread_roots(
        self,
        user_id: str,
        room_id: str,
        *,
        ceiling: int,
        before: int,
        limit: int,
        participant: str | None,
    ) -> tuple[list[StoredEvent], int | None]:
        """Visible thread roots, latest activity first; and where the next page starts (None: no more)."""
        roots: list[StoredEvent] = []
        for _ in range(MAX_SCAN_BATCHES):
            size = min(max(2 * (limit - len(roots)), 10), MAX_BATCH)
            rows = await self.store.list_thread_roots(
                room_id, upto=ceiling, before=before, limit=size, participant=participant
            )
            loaded = await self.events.get_events([r.root_id for r in rows])
            candidates = [loaded[r.root_id] for r in rows if r.root_id in loaded]
            visible = {s.event_id for s in await self.visibility.filter_events(user_id, room_id, candidates)}
            for i, row in enumerate(rows):
                if row.root_id not in visible:
                    continue
                roots.append(loaded[row.root_id])
                if len(roots) >= limit:
                    more = len(rows) == size or i < len(rows) - 1
                    return roots, (row.latest_ordering - 1 if more else None)
            if len(rows) < size:
                return roots, None
            before = rows[-1].latest_ordering - 1
        return roots, before

    # -- GET /v1/rooms/{roomId}/timestamp_to_event --------------------------------------------------

    async def event_at_timestamp(
        self, user_id: str, room_id: str, ts: int, *, forwards: bool
    ) -> dict[str, Any]:
        access = await self.access.check_can_read(user_id, room_id)
        ceiling = self._ceiling(access)
        after_key: tuple[int, int] | None = None
        for _ in range(MAX_SCAN_BATCHES):
            rows = await self.store.list_by_timestamp(
                room_id, ts, forwards=forwards, upto=ceiling, after_key=after_key, limit=100
            )
            loaded = await self.events.get_events_ordered([r.event_id for r in rows])
            visible = {s.event_id for s in await self.visibility.filter_events(user_id, room_id, loaded)}
            for row in rows:
                if row.event_id in visible:
                    return {"event_id": row.event_id, "origin_server_ts": row.origin_server_ts}
            if len(rows) < 100:
                break
            after_key = (rows[-1].origin_server_ts, rows[-1].stream_ordering)
        if self.remote_timestamp is not None:
            # Nothing here: ask the servers in the room (best effort; federation/remote_rooms.py).
            remote = await self.remote_timestamp(room_id, ts, forwards)
            if remote is not None:
                return remote
        direction = "forward" if forwards else "backward"
        raise not_found(f"Unable to find event from {ts} in {direction} direction")
