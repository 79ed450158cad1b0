"""Server-side search (client-server API "Server Side Search", search.yaml): `room_events`.

Indexing: a persister batch hook writes the searchable text of each new m.room.message body,
m.room.name and m.room.topic inside the event transaction (one or two INSERTs per batch), and drops
the row of every event a redaction in the batch targets.

Searching: the rooms the user is in (joined: all of it; left or banned: up to their leave) are
asked for candidates page by page through `SearchStore` (the engine-specific part, see
storage/search_dialect.py and docs/search.md); every candidate is re-checked here against the filter
and history visibility (`VisibilityService.filter_events`) before it is returned, and scanning stops
after `MAX_ROUNDS` pages so one request stays bounded (the client gets `next_batch` to continue).

`next_batch` tokens are opaque: base64 of (order, mode, position, group room). Mode `r` pages
`recent` results by stream ordering, `k` pages `rank` results by offset into the ranked candidates,
`w` continues a window scan (queries no index can serve, e.g. one Latin letter on SQLite).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.core.tokens import PaginationToken
from homeserver.events import constants as c
from homeserver.events.event import Event
from homeserver.events.filter import RoomEventFilter
from homeserver.persist.persister import PersistedEvent
from homeserver.services.serialize import EventSerializer
from homeserver.services.timeline import TimelineService
from homeserver.services.visibility import VisibilityService
from homeserver.state.current import CurrentStateCache, RoomSnapshot
from homeserver.state.indexes import MembershipIndex
from homeserver.storage.database import Connection
from homeserver.storage.search_dialect import SearchQuery, parse_terms
from homeserver.storage.stores.events import EventStore, StoredEvent
from homeserver.storage.stores.search import SearchHit, SearchStore

logger = logging.getLogger(__name__)

MESSAGE = "m.room.message"
NAME = "m.room.name"
TOPIC = "m.room.topic"
KEY_TYPES = {"content.body": MESSAGE, "content.name": NAME, "content.topic": TOPIC}
ALL_KEYS = tuple(KEY_TYPES)
GROUP_KEYS = ("room_id", "sender")

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
# Candidate pages read per request before answering with what was found (and a next_batch).
MAX_ROUNDS = 5
MAX_PAGE = 500
# Stream orderings a window scan covers per round.
WINDOW = 20_000

_EMPTY_FILTER = RoomEventFilter()
StateIdsAt = Callable[[RoomSnapshot, int], Awaitable[dict[tuple[str, str], str]]]


def searchable_text(event: Event) -> str | None:
    """The text `room_events` search covers for this event, or None (spec: content.body of
    m.room.message, content.name of m.room.name, content.topic and the text/plain m.topic of
    m.room.topic)."""
    content = event.content
    etype = event.type
    if etype == MESSAGE:
        if event.state_key is not None:
            return None
        body = content.get("body")
        return body if isinstance(body, str) and body.strip() else None
    if event.state_key != "":
        return None
    if etype == NAME:
        name = content.get("name")
        return name if isinstance(name, str) and name.strip() else None
    if etype == TOPIC:
        parts = []
        topic = content.get("topic")
        if isinstance(topic, str) and topic.strip():
            parts.append(topic)
        rich = content.get("m.topic")
        reps = rich.get("m.text") if isinstance(rich, dict) else None
        for rep in reps if isinstance(reps, list) else ():
            if not isinstance(rep, dict) or rep.get("mimetype", "text/plain") != "text/plain":
                continue
            body = rep.get("body")
            if isinstance(body, str) and body.strip() and body not in parts:
                parts.append(body)
        return "\n".join(parts) or None
    return None


@dataclass(frozen=True, slots=True)
class RoomEventsCriteria:
    """The parsed `search_categories.room_events` of a request."""

    search_term: str
    keys: tuple[str, ...] = ALL_KEYS
    filter: RoomEventFilter = _EMPTY_FILTER
    order_by: str = "rank"
    include_state: bool = False
    group_by: tuple[str, ...] = ()
    event_context: bool = False
    before_limit: int = DEFAULT_CONTEXT
    after_limit: int = DEFAULT_CONTEXT
    include_profile: bool = False


def _position(text: str) -> int:
    """A batch position: plain digits within BIGINT (it reaches SQL), else ValueError."""
    if not text.isascii() or not text.isdigit() or len(text.lstrip("0")) > 19 or int(text) > 2**63 - 1:
        raise ValueError("invalid batch position")
    return int(text)


@dataclass(frozen=True, slots=True)
class SearchBatch:
    order: str
    mode: str  # r: before stream ordering; k: rank offset; w: window scan below stream ordering
    position: int
    room_id: str | None = None

    def serialize(self) -> str:
        raw = f"{self.order}\n{self.mode}\n{self.position}\n{self.room_id or ''}".encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def parse(cls, token: str) -> SearchBatch:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            order, mode, position, room_id = raw.split("\n")
            batch = cls(order, mode, _position(position), room_id or None)
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid batch") from exc
        if order not in ("rank", "recent") or mode not in ("r", "k", "w"):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid batch")
        return batch


@dataclass(slots=True)
class _Found:
    hits: list[tuple[SearchHit, StoredEvent]]
    next_batch: SearchBatch | None
    count: int


class SearchService:
    def __init__(
        self,
        store: SearchStore,
        events: EventStore,
        memberships: MembershipIndex,
        visibility: VisibilityService,
        timeline: TimelineService,
        serializer: EventSerializer,
        state: CurrentStateCache,
        *,
        state_ids_at: StateIdsAt,
        current_position: Callable[[], int],
    ) -> None:
        self.store = store
        self.events = events
        self.memberships = memberships
        self.visibility = visibility
        self.timeline = timeline
        self.serializer = serializer
        self.state = state
        self.state_ids_at = state_ids_at
        self.current_position = current_position
        # Set by the composition root from `search_mask_patterns`.
        self.mask_patterns: list[re.Pattern[str]] = []

    async def start(self) -> None:
        for problem in await self.store.check_engine():
            logger.warning("search: %s", problem)

    # -- indexing (persister batch hook, inside the event transaction) -------------------------------

    async def index_batch_txn(self, conn: Connection, persisted: Sequence[PersistedEvent]) -> None:
        entries = []
        redacted = []
        for p in persisted:
            event = p.event
            text = searchable_text(event)
            if text is not None:
                entries.append((p.stream_ordering, event.room_id, text))
            if event.type == c.REDACTION:
                target = event.redacts
                if target:
                    redacted.append(target)
        if entries:
            await self.store.index_txn(conn, entries)
        if redacted:
            await self.store.delete_events_txn(conn, redacted)

    # -- POST /search -------------------------------------------------------------------------------

    async def search(
        self, user_id: str, device_id: str | None, criteria: RoomEventsCriteria, next_batch: str | None
    ) -> dict[str, Any]:
        batch = SearchBatch.parse(next_batch) if next_batch else None
        if batch is not None and batch.order != criteria.order_by:
            raise MatrixError(400, "M_INVALID_PARAM", "next_batch belongs to another order_by")
        flt = criteria.filter
        limit = max(0, min(DEFAULT_LIMIT if flt.limit is None else flt.limit, MAX_LIMIT))
        terms = parse_terms(criteria.search_term)
        types = tuple(dict.fromkeys(KEY_TYPES[k] for k in criteria.keys if k in KEY_TYPES))
        full, bounded = await self._searchable_rooms(user_id, flt, batch.room_id if batch else None)
        if not terms or not types or not (full or bounded) or limit == 0 or flt.blocks_all:
            return {"search_categories": {"room_events": {"results": [], "count": 0, "highlights": []}}}

        query = SearchQuery(
            terms,
            tuple(full),
            tuple(bounded),
            types,
            senders=flt.senders,
            not_senders=flt.not_senders or (),
        )
        query = await self.store.prepare(query)
        if self.store.uses_index(query):
            found = await self._indexed(user_id, query, flt, criteria.order_by, batch, limit)
        else:
            found = await self._window(user_id, query, flt, criteria.order_by, batch, limit)
        body = await self._response(user_id, device_id, criteria, found, dict(bounded))
        return {"search_categories": {"room_events": body}}

    async def _searchable_rooms(
        self, user_id: str, flt: RoomEventFilter, only_room: str | None
    ) -> tuple[list[str], list[tuple[str, int]]]:
        """Rooms the user is joined to, and rooms they left or were banned from with the stream
        ordering of that membership (spec: search covers rooms the user has left, up to leaving)."""
        rooms = await self.memberships.load_user(user_id)
        forgotten = self.memberships.forgotten.get(user_id, set())
        full: list[str] = []
        bounded: list[tuple[str, int]] = []
        for room_id, (membership, position) in sorted(rooms.items()):
            if room_id in forgotten or not flt.room_allowed(room_id):
                continue
            if only_room is not None and room_id != only_room:
                continue
            if membership == c.JOIN:
                full.append(room_id)
            elif membership in (c.LEAVE, c.BAN):
                bounded.append((room_id, position))
        return full, bounded

    async def _accept(
        self, user_id: str, hits: Sequence[SearchHit], flt: RoomEventFilter
    ) -> dict[str, StoredEvent]:
        """The hits the user may see and the filter lets through."""
        loaded = await self.events.get_events([h.event_id for h in hits])
        by_room: dict[str, list[StoredEvent]] = {}
        for hit in hits:
            stored = loaded.get(hit.event_id)
            if stored is None or stored.redacted_by is not None or stored.outlier:
                continue
            if not flt.matches_event(stored.event, hit.room_id):
                continue
            by_room.setdefault(hit.room_id, []).append(stored)
        visible: dict[str, StoredEvent] = {}
        for room_id, candidates in by_room.items():
            originals = {id(s) for s in candidates}
            for stored in await self.visibility.filter_events(user_id, room_id, candidates):
                # A pruned copy (erased sender) has no text left to match: never a search hit.
                if id(stored) in originals:
                    visible[stored.event_id] = stored
        return visible

    async def _indexed(
        self,
        user_id: str,
        query: SearchQuery,
        flt: RoomEventFilter,
        order: str,
        batch: SearchBatch | None,
        limit: int,
    ) -> _Found:
        room = batch.room_id if batch else None
        mode = "r" if order == "recent" else "k"
        if batch is not None and batch.mode != mode:
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid batch")
        before = batch.position if batch is not None and mode == "r" else None
        offset = batch.position if batch is not None and mode == "k" else 0
        size = min(max(2 * limit, 20), MAX_PAGE)
        collected: list[tuple[SearchHit, StoredEvent]] = []
        next_batch: SearchBatch | None = None
        for round_no in range(MAX_ROUNDS):
            hits = await self.store.search_page(
                query, "recent" if mode == "r" else "rank", before=before, offset=offset, limit=size
            )
            accepted = await self._accept(user_id, hits, flt)
            for i, hit in enumerate(hits):
                stored = accepted.get(hit.event_id)
                if stored is not None:
                    collected.append((hit, stored))
                if len(collected) >= limit:
                    if i < len(hits) - 1 or len(hits) == size:
                        position = hit.stream_ordering if mode == "r" else offset + i + 1
                        next_batch = SearchBatch(order, mode, position, room)
                    break
            if len(collected) >= limit or len(hits) < size:
                break
            before = hits[-1].stream_ordering
            offset += len(hits)
            if round_no == MAX_ROUNDS - 1:
                # Bounded work per request: hand back what was found and where to go on from.
                next_batch = SearchBatch(order, mode, before if mode == "r" else offset, room)
        count = await self.store.count(query)
        return _Found(collected, next_batch, max(count, len(collected)))

    async def _window(
        self,
        user_id: str,
        query: SearchQuery,
        flt: RoomEventFilter,
        order: str,
        batch: SearchBatch | None,
        limit: int,
    ) -> _Found:
        room = batch.room_id if batch else None
        if batch is not None and batch.mode != "w":
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid batch")
        top = batch.position if batch is not None else self.current_position() + 1
        size = min(max(2 * limit, 20), MAX_PAGE)
        collected: list[tuple[SearchHit, StoredEvent]] = []
        for _ in range(MAX_ROUNDS):
            if top <= 1:
                break
            floor = max(top - WINDOW, 1)
            hits = await self.store.window_page(query, before=top, floor=floor, limit=size)
            accepted = await self._accept(user_id, hits, flt)
            for i, hit in enumerate(hits):
                stored = accepted.get(hit.event_id)
                if stored is not None:
                    collected.append((hit, stored))
                if len(collected) >= limit:
                    more = i < len(hits) - 1 or len(hits) == size or floor > 1
                    nxt = SearchBatch(order, "w", hit.stream_ordering, room) if more else None
                    return _Found(collected, nxt, len(collected) + (1 if more else 0))
            top = hits[-1].stream_ordering if len(hits) == size else floor
        more = top > 1
        nxt = SearchBatch(order, "w", top, room) if more else None
        return _Found(collected, nxt, len(collected))

    # -- the response -------------------------------------------------------------------------------

    async def _response(
        self,
        user_id: str,
        device_id: str | None,
        criteria: RoomEventsCriteria,
        found: _Found,
        ceilings: dict[str, int],
    ) -> dict[str, Any]:
        """`ceilings`: for rooms the user left, the last stream ordering they may read."""
        current = self.current_position()
        events = [stored for _, stored in found.hits]
        serialized: dict[str, dict[str, Any]] = {}
        by_room: dict[str, list[StoredEvent]] = {}
        for stored in events:
            by_room.setdefault(stored.event.room_id, []).append(stored)
        for room_id, room_events in by_room.items():
            ceiling = min(current, ceilings.get(room_id, current))
            out = await self.timeline.serialize(user_id, device_id, room_id, room_events, ceiling=ceiling)
            for stored, event in zip(room_events, out, strict=True):
                serialized[stored.event_id] = event

        results = []
        for hit, stored in found.hits:
            entry: dict[str, Any] = {"rank": hit.score, "result": serialized[stored.event_id]}
            if criteria.event_context:
                ceiling = min(current, ceilings.get(stored.event.room_id, current))
                entry["context"] = await self._context(user_id, device_id, stored, criteria, ceiling)
            results.append(entry)

        terms = parse_terms(criteria.search_term)
        body: dict[str, Any] = {
            "results": results,
            "count": found.count,
            "highlights": [self._mask(t.text) for t in terms],
        }
        if self.mask_patterns:
            for entry in results:
                self._mask_event(entry["result"])
        if found.next_batch is not None:
            body["next_batch"] = found.next_batch.serialize()
        if criteria.group_by:
            body["groups"] = self._groups(criteria.group_by, found)
        if criteria.include_state and by_room:
            body["state"] = {room_id: await self._room_state(user_id, room_id) for room_id in by_room}
        return body

    def _mask(self, text: str) -> str:
        """`search_mask_patterns`: every match becomes as many '*' (personal data in results)."""
        for pattern in self.mask_patterns:
            text = pattern.sub(lambda m: "*" * len(m.group(0)), text)
        return text

    def _mask_event(self, event: dict[str, Any]) -> None:
        content = event.get("content")
        if not isinstance(content, dict):
            return
        masked = dict(content)
        for key in ("body", "formatted_body", "name", "topic"):
            value = masked.get(key)
            if isinstance(value, str):
                masked[key] = self._mask(value)
        # A fresh dict: the serialised event may be shared with caches.
        event["content"] = masked

    @staticmethod
    def _groups(group_by: Sequence[str], found: _Found) -> dict[str, Any]:
        groups: dict[str, Any] = {}
        for key in group_by:
            group: dict[str, dict[str, Any]] = {}
            for _, stored in found.hits:
                value = stored.event.room_id if key == "room_id" else stored.event.sender
                entry = group.get(value)
                if entry is None:
                    entry = group[value] = {"results": [], "order": len(group) + 1}
                    if key == "room_id" and found.next_batch is not None:
                        nb = found.next_batch
                        entry["next_batch"] = SearchBatch(nb.order, nb.mode, nb.position, value).serialize()
                entry["results"].append(stored.event_id)
            groups[key] = group
        return groups

    async def _context(
        self,
        user_id: str,
        device_id: str | None,
        stored: StoredEvent,
        criteria: RoomEventsCriteria,
        ceiling: int,
    ) -> dict[str, Any]:
        room_id = stored.event.room_id
        pos = stored.stream_ordering
        before = await self.timeline.get_messages(
            user_id,
            device_id,
            room_id,
            from_token=PaginationToken(pos - 1).serialize(),
            to_token=None,
            backwards=True,
            limit=criteria.before_limit,
            flt=_EMPTY_FILTER,
        )
        after = await self.timeline.get_messages(
            user_id,
            device_id,
            room_id,
            from_token=PaginationToken(pos).serialize(),
            to_token=None,
            backwards=False,
            limit=criteria.after_limit,
            flt=_EMPTY_FILTER,
        )
        context: dict[str, Any] = {
            "start": before.get("end") or PaginationToken(0).serialize(),
            "end": after.get("end") or PaginationToken(ceiling).serialize(),
            "events_before": before["chunk"],
            "events_after": after["chunk"],
        }
        if criteria.include_profile:
            senders = sorted(
                {stored.event.sender}
                | {
                    e["sender"]
                    for e in (*before["chunk"], *after["chunk"])
                    if isinstance(e.get("sender"), str)
                }
            )
            member_ids = await self.timeline.store.member_event_ids_at(room_id, senders, pos)
            profiles: dict[str, dict[str, str]] = {}
            for member in await self.events.get_events_ordered(member_ids):
                content = member.event.content if member.redacted_by is None else {}
                profile = {
                    field: value
                    for field in ("displayname", "avatar_url")
                    if isinstance(value := content.get(field), str)
                }
                if member.event.state_key:
                    profiles[member.event.state_key] = profile
            context["profile_info"] = profiles
        return context

    async def _room_state(self, user_id: str, room_id: str) -> list[dict[str, Any]]:
        """Current state of a joined room; for a room the user left, the state when they left."""
        snapshot = await self.state.get(room_id)
        if snapshot is None:
            return []
        rooms = await self.memberships.load_user(user_id)
        membership, position = rooms.get(room_id, (None, 0))
        if membership == c.JOIN:
            state = list(snapshot.state.values())
            loaded = await self.events.get_events_ordered([e.event_id for e in state])
        else:
            ids = await self.state_ids_at(snapshot, position)
            loaded = await self.events.get_events_ordered(sorted(ids.values()))
        return await self.serializer.serialize(loaded, user_id=user_id)
