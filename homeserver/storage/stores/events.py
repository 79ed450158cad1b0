"""events, event_txn_ids: reading and writing persisted events, with an LRU event cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core import json as hjson
from homeserver.core.streams import EventsRow
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion, get_room_version
from homeserver.metrics.caches import register_cache
from homeserver.metrics.usage import record_events_fetched
from homeserver.storage.database import Connection, Database


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    stream_ordering: int
    redacted_by: str | None
    outlier: bool = False
    # For state events: the event this one replaced in the room state.
    replaces_state: str | None = None

    @property
    def event_id(self) -> str:
        return self.event.event_id


@dataclass(frozen=True, slots=True)
class NewEventRow:
    """What the persister writes for one event."""

    event: Event
    stream_ordering: int
    json: str
    contains_url: bool
    relates_to_id: str | None
    rel_type: str | None
    replaces_state: str | None = None
    outlier: bool = False
    rejected_reason: str | None = None
    soft_failed: bool = False
    # An outlier row of this event exists: update it in place instead of inserting.
    replaces_outlier: bool = False


def relation_of(event: Event) -> tuple[str | None, str | None]:
    rel = event.content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None, None
    target = rel.get("event_id")
    rel_type = rel.get("rel_type")
    if not isinstance(target, str):
        return None, None
    if not isinstance(rel_type, str):
        # A plain reply (m.in_reply_to) is not a relation in the spec's sense.
        return None, None
    return target, rel_type


_COLS = "event_id, room_id, stream_ordering, json, redacted_by, outlier, replaces_state"


class EventStore:
    CACHE_SIZE = 50_000

    def __init__(self, db: Database, room_versions: RoomVersionLookup) -> None:
        self.db = db
        self.room_versions = room_versions
        self._cache: OrderedDict[str, StoredEvent] = OrderedDict()
        self.cache_metric = register_cache("*getEvent*", self, lambda s: len(s._cache), self.CACHE_SIZE)

    # -- cache -----------------------------------------------------------------------------------

    def _remember(self, stored: StoredEvent) -> None:
        self._cache[stored.event_id] = stored
        if len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
            self.cache_metric.evicted_size += 1

    def invalidate(self, event_id: str) -> None:
        if self._cache.pop(event_id, None) is not None:
            self.cache_metric.evicted_invalidation += 1

    def cache_new(self, stored: StoredEvent) -> None:
        self._remember(stored)

    async def _from_rows(self, rows: Iterable[Any]) -> list[StoredEvent]:
        result = []
        rows = list(rows)
        record_events_fetched(len(rows))
        for row in rows:
            version = await self.room_versions.version_of(row["room_id"])
            event = Event(hjson.loads(row["json"]), version, row["event_id"])
            stored = StoredEvent(
                event,
                int(row["stream_ordering"]),
                row["redacted_by"],
                bool(row["outlier"]),
                row["replaces_state"],
            )
            self._remember(stored)
            result.append(stored)
        return result

    # -- reads -----------------------------------------------------------------------------------

    async def get_event(self, event_id: str) -> StoredEvent | None:
        found = await self.get_events([event_id])
        return found.get(event_id)

    async def get_events(self, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
        result: dict[str, StoredEvent] = {}
        missing = []
        for event_id in event_ids:
            stored = self._cache.get(event_id)
            if stored is None:
                missing.append(event_id)
            else:
                result[event_id] = stored
        metric = self.cache_metric
        metric.misses += len(missing)
        metric.hits += len(event_ids) - len(missing)
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            placeholders = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            rows = await self.db.fetch(
                f"SELECT {_COLS} FROM events WHERE event_id IN ({placeholders})", *chunk
            )
            for stored in await self._from_rows(rows):
                result[stored.event_id] = stored
        return result

    async def get_events_ordered(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        found = await self.get_events(event_ids)
        return [found[e] for e in event_ids if e in found]

    async def room_event_ids_between(
        self, room_id: str, after: int, upto: int, *, limit: int, newest_first: bool
    ) -> list[tuple[str, int]]:
        """(event_id, stream_ordering) with after < ordering <= upto."""
        order = "DESC" if newest_first else "ASC"
        rows = await self.db.fetch(
            "SELECT event_id, stream_ordering FROM events WHERE room_id = $1 AND stream_ordering > $2"
            " AND stream_ordering <= $3 AND NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
            f" ORDER BY stream_ordering {order} LIMIT $4",
            room_id,
            after,
            upto,
            limit,
        )
        return [(r[0], int(r[1])) for r in rows]

    async def room_events_between(
        self, room_id: str, after: int, upto: int, *, limit: int, newest_first: bool
    ) -> list[StoredEvent]:
        ids = await self.room_event_ids_between(room_id, after, upto, limit=limit, newest_first=newest_first)
        return await self.get_events_ordered([i for i, _ in ids])

    async def list_relations_by_sender(self, target_id: str, rel_type: str, sender: str) -> list[StoredEvent]:
        """Unredacted events of `sender` relating to `target_id` with `rel_type`."""
        rows = await self.db.fetch(
            "SELECT event_id FROM events WHERE relates_to_id = $1 AND rel_type = $2 AND sender = $3"
            " AND redacted_by IS NULL",
            target_id,
            rel_type,
            sender,
        )
        return await self.get_events_ordered([r[0] for r in rows])

    async def rows_since(self, after: int, upto: int, limit: int) -> list[EventsRow]:
        """Events stream rows with after < stream_ordering <= upto (stream-bus catch-up)."""
        rows = await self.db.fetch(
            "SELECT stream_ordering, room_id, event_id, type, state_key, sender, json, outlier,"
            " rejected_reason, soft_failed FROM events WHERE stream_ordering > $1 AND stream_ordering <= $2"
            " ORDER BY stream_ordering LIMIT $3",
            after,
            upto,
            limit,
        )
        result = []
        for r in rows:
            pdu = hjson.loads(r[6])
            content = pdu.get("content") if isinstance(pdu.get("content"), dict) else {}
            redacts = pdu.get("redacts") or content.get("redacts")
            result.append(
                EventsRow(
                    int(r[0]),
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    str(content.get("membership")) if r[3] == "m.room.member" else None,
                    redacts if isinstance(redacts, str) and r[3] == "m.room.redaction" else None,
                    outlier=bool(r[7]),
                    rejected=r[8] is not None,
                    soft_failed=bool(r[9]),
                )
            )
        return result

    async def max_stream_ordering(self) -> int:
        return int(await self.db.fetchval("SELECT COALESCE(MAX(stream_ordering), 0) FROM events"))

    async def min_stream_ordering(self) -> int:
        """The lowest ordering (negative once history was backfilled), 0 for no events."""
        return int(await self.db.fetchval("SELECT COALESCE(MIN(stream_ordering), 0) FROM events") or 0)

    async def room_max_stream_ordering(self, room_id: str) -> int:
        value = await self.db.fetchval(
            "SELECT COALESCE(MAX(stream_ordering), 0) FROM events WHERE room_id = $1", room_id
        )
        return int(value or 0)

    async def max_stream_ordering_per_room(self) -> dict[str, int]:
        rows = await self.db.fetch("SELECT room_id, MAX(stream_ordering) FROM events GROUP BY room_id")
        return {r[0]: int(r[1]) for r in rows}

    async def get_txn_event_id(
        self, user_id: str, device_id: str, room_id: str, event_type: str, txn_id: str
    ) -> str | None:
        value = await self.db.fetchval(
            "SELECT event_id FROM event_txn_ids WHERE user_id = $1 AND device_id = $2 AND room_id = $3"
            " AND event_type = $4 AND txn_id = $5",
            user_id,
            device_id,
            room_id,
            event_type,
            txn_id,
        )
        return str(value) if value is not None else None

    async def list_txn_ids(self, user_id: str, device_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        """event id -> the transaction id its sender's device sent it with, for those in `event_ids`."""
        if not event_ids:
            return {}
        placeholders = ", ".join(f"${i + 3}" for i in range(len(event_ids)))
        rows = await self.db.fetch(
            "SELECT event_id, txn_id FROM event_txn_ids WHERE user_id = $1 AND device_id = $2"
            f" AND event_id IN ({placeholders})",
            user_id,
            device_id,
            *event_ids,
        )
        return {r[0]: r[1] for r in rows}

    # -- writes (inside the persister's transaction) -----------------------------------------------

    async def insert_events_txn(self, conn: Connection, rows: Sequence[NewEventRow]) -> None:
        replacing = [r for r in rows if r.replaces_outlier]
        if replacing:
            rows = [r for r in rows if not r.replaces_outlier]
            await conn.executemany(
                "UPDATE events SET stream_ordering = $2, json = $3, contains_url = $4,"
                " relates_to_id = $5, rel_type = $6, replaces_state = $7, outlier = $8,"
                " rejected_reason = $9, soft_failed = $10 WHERE event_id = $1 AND outlier",
                [
                    (
                        r.event.event_id,
                        r.stream_ordering,
                        r.json,
                        r.contains_url,
                        r.relates_to_id,
                        r.rel_type,
                        r.replaces_state,
                        r.outlier,
                        r.rejected_reason,
                        r.soft_failed,
                    )
                    for r in replacing
                ],
            )
        if not rows:
            return
        await conn.executemany(
            "INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, sender,"
            " origin_server_ts, json, contains_url, relates_to_id, rel_type, replaces_state, outlier,"
            " rejected_reason, soft_failed)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            [
                (
                    r.event.event_id,
                    r.event.room_id,
                    r.stream_ordering,
                    r.event.depth,
                    r.event.type,
                    r.event.state_key,
                    r.event.sender,
                    r.event.origin_server_ts,
                    r.json,
                    r.contains_url,
                    r.relates_to_id,
                    r.rel_type,
                    r.replaces_state,
                    r.outlier,
                    r.rejected_reason,
                    r.soft_failed,
                )
                for r in rows
            ],
        )

    async def insert_txn_ids_txn(
        self, conn: Connection, rows: Sequence[tuple[str, str, str, str, str, str, int]]
    ) -> None:
        """rows: (user_id, device_id, room_id, event_type, txn_id, event_id, created_ts)."""
        await conn.executemany(
            "INSERT INTO event_txn_ids (user_id, device_id, room_id, event_type, txn_id, event_id,"
            " created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            rows,
        )

    async def set_redacted_by_txn(self, conn: Connection, event_id: str, redaction_id: str) -> None:
        await conn.execute(
            "UPDATE events SET redacted_by = $2 WHERE event_id = $1 AND redacted_by IS NULL",
            event_id,
            redaction_id,
        )


class RoomVersionLookup:
    """room_id -> RoomVersion, cached forever (a room's version never changes)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._versions: dict[str, RoomVersion] = {}

    def remember(self, room_id: str, version: RoomVersion) -> None:
        self._versions[room_id] = version

    def forget(self, room_id: str) -> None:
        """After the room is purged from the database."""
        self._versions.pop(room_id, None)

    def known(self, room_id: str) -> RoomVersion | None:
        return self._versions.get(room_id)

    async def get(self, room_id: str) -> RoomVersion | None:
        version = self._versions.get(room_id)
        if version is None:
            ident = await self.db.fetchval("SELECT room_version FROM rooms WHERE room_id = $1", room_id)
            if ident is None:
                return None
            version = get_room_version(str(ident))
            if version is None:
                return None
            self._versions[room_id] = version
        return version

    async def version_of(self, room_id: str) -> RoomVersion:
        version = await self.get(room_id)
        if version is None:
            raise LookupError(f"unknown room {room_id}")
        return version
