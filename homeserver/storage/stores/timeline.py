"""Read-only timeline queries over `events`: pagination pages, relations (children, threads,
aggregation inputs) and timestamp lookups.

Every query is bounded by a room and a stream-ordering range, skips outliers, rejected and soft-failed events,
and returns small rows (ids and orderings); the caller loads the events themselves through the
event cache. Relations ignore redacted children: redacting a child breaks its relationship.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database

# A pagination position can never exceed this (BIGINT-safe "infinity" for open ranges).
MAX_POSITION = 2**62

_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class PageRow:
    event_id: str
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class TimestampRow:
    event_id: str
    origin_server_ts: int
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class ChildRow:
    event_id: str
    relates_to_id: str
    rel_type: str
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class ThreadSummaryRow:
    root_id: str
    count: int
    latest_ordering: int
    user_participated: bool  # the user sent a thread reply (root sender is checked by the caller)


@dataclass(frozen=True, slots=True)
class ThreadRootRow:
    root_id: str
    latest_ordering: int


@dataclass(frozen=True, slots=True)
class EventPushdown:
    """The part of a RoomEventFilter that SQL can apply exactly (the caller re-checks in Python)."""

    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] | None = None
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] | None = None
    contains_url: bool | None = None


class _Args:
    """Collects positional arguments and hands out their `$n` placeholders."""

    __slots__ = ("values",)

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"

    def add_all(self, values: Iterable[Any]) -> str:
        return ", ".join(self.add(v) for v in values)


def _pushdown_sql(p: EventPushdown | None, args: _Args, alias: str = "") -> str:
    if p is None:
        return ""
    col = f"{alias}." if alias else ""
    sql = []
    if p.types is not None:
        sql.append(f" AND {col}type IN ({args.add_all(p.types)})" if p.types else " AND FALSE")
    if p.not_types:
        sql.append(f" AND {col}type NOT IN ({args.add_all(p.not_types)})")
    if p.senders is not None:
        sql.append(f" AND {col}sender IN ({args.add_all(p.senders)})" if p.senders else " AND FALSE")
    if p.not_senders:
        sql.append(f" AND {col}sender NOT IN ({args.add_all(p.not_senders)})")
    if p.contains_url is not None:
        sql.append(f" AND {col}contains_url" if p.contains_url else f" AND NOT {col}contains_url")
    return "".join(sql)


_LIVE = "NOT outlier AND rejected_reason IS NULL AND NOT soft_failed"
_LIVE_E = "NOT e.outlier AND e.rejected_reason IS NULL AND NOT e.soft_failed"
_LIVE_T = "NOT t.outlier AND t.rejected_reason IS NULL AND NOT t.soft_failed"


class TimelineStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- room timeline ---------------------------------------------------------------------------

    async def list_room_page(
        self,
        room_id: str,
        *,
        after: int,
        upto: int,
        limit: int,
        newest_first: bool,
        pushdown: EventPushdown | None = None,
    ) -> list[PageRow]:
        """Events with after < stream_ordering <= upto, in walk order."""
        args = _Args(room_id, after, upto)
        where = _pushdown_sql(pushdown, args)
        order = "DESC" if newest_first else "ASC"
        rows = await self.db.fetch(
            "SELECT event_id, stream_ordering FROM events WHERE room_id = $1 AND stream_ordering > $2"
            f" AND stream_ordering <= $3 AND {_LIVE}{where}"
            f" ORDER BY stream_ordering {order} LIMIT {args.add(limit)}",
            *args.values,
        )
        return [PageRow(r[0], int(r[1])) for r in rows]

    async def list_by_timestamp(
        self,
        room_id: str,
        ts: int,
        *,
        forwards: bool,
        upto: int,
        after_key: tuple[int, int] | None,
        limit: int,
    ) -> list[TimestampRow]:
        """Events at or after (forwards) / at or before (backwards) `ts`, closest first; ties by
        stream order. `after_key` = (ts, ordering) of the last row already seen, to continue."""
        args = _Args(room_id, ts, upto)
        if forwards:
            where = "origin_server_ts >= $2"
            order = "origin_server_ts ASC, stream_ordering ASC"
            if after_key is not None:
                t, o = args.add(after_key[0]), args.add(after_key[1])
                where += (
                    f" AND (origin_server_ts > {t} OR (origin_server_ts = {t} AND stream_ordering > {o}))"
                )
        else:
            where = "origin_server_ts <= $2"
            order = "origin_server_ts DESC, stream_ordering DESC"
            if after_key is not None:
                t, o = args.add(after_key[0]), args.add(after_key[1])
                where += (
                    f" AND (origin_server_ts < {t} OR (origin_server_ts = {t} AND stream_ordering < {o}))"
                )
        rows = await self.db.fetch(
            "SELECT event_id, origin_server_ts, stream_ordering FROM events WHERE room_id = $1"
            f" AND {where} AND stream_ordering <= $3 AND {_LIVE}"
            f" ORDER BY {order} LIMIT {args.add(limit)}",
            *args.values,
        )
        return [TimestampRow(r[0], int(r[1]), int(r[2])) for r in rows]

    # -- relations -------------------------------------------------------------------------------

    async def list_relations(
        self,
        room_id: str,
        parent_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        after: int,
        upto: int,
        limit: int,
        newest_first: bool,
        max_depth: int = 1,
    ) -> list[PageRow]:
        """Children of `parent_id` (same room, not redacted) with after < ordering <= upto.

        With max_depth > 1, children of children are included too, up to that many hops; the
        rel_type/event_type conditions then apply to every returned event, whatever its depth.
        """
        args = _Args(room_id, parent_id, after, upto)
        where = ""
        if rel_type is not None:
            where += f" AND e.rel_type = {args.add(rel_type)}"
        if event_type is not None:
            where += f" AND e.type = {args.add(event_type)}"
        order = "DESC" if newest_first else "ASC"
        if max_depth <= 1:
            sql = (
                "SELECT e.event_id, e.stream_ordering FROM events e WHERE e.relates_to_id = $2"
                " AND e.room_id = $1 AND e.rel_type IS NOT NULL AND e.redacted_by IS NULL"
                f" AND e.stream_ordering > $3 AND e.stream_ordering <= $4 AND {_LIVE_E}{where}"
                f" ORDER BY e.stream_ordering {order} LIMIT {args.add(limit)}"
            )
        else:
            depth = args.add(max_depth)
            sql = (
                "WITH RECURSIVE related(event_id, depth) AS ("
                " SELECT event_id, 1 FROM events WHERE relates_to_id = $2 AND room_id = $1"
                " AND rel_type IS NOT NULL AND redacted_by IS NULL"
                " UNION"
                " SELECT c.event_id, r.depth + 1 FROM events c JOIN related r ON c.relates_to_id = r.event_id"
                f" WHERE r.depth < {depth} AND c.room_id = $1 AND c.rel_type IS NOT NULL"
                " AND c.redacted_by IS NULL"
                ")"
                " SELECT DISTINCT e.event_id, e.stream_ordering FROM related r"
                " JOIN events e ON e.event_id = r.event_id"
                f" WHERE e.stream_ordering > $3 AND e.stream_ordering <= $4 AND {_LIVE_E}{where}"
                f" ORDER BY e.stream_ordering {order} LIMIT {args.add(limit)}"
            )
        rows = await self.db.fetch(sql, *args.values)
        return [PageRow(r[0], int(r[1])) for r in rows]

    async def list_children(
        self, room_id: str, parent_ids: Sequence[str], rel_types: Sequence[str], *, upto: int
    ) -> list[ChildRow]:
        """Direct children of several parents with the given rel types, in stream order."""
        out: list[ChildRow] = []
        for start in range(0, len(parent_ids), _IN_CHUNK):
            chunk = parent_ids[start : start + _IN_CHUNK]
            args = _Args(room_id, upto)
            rows = await self.db.fetch(
                "SELECT event_id, relates_to_id, rel_type, stream_ordering FROM events"
                f" WHERE relates_to_id IN ({args.add_all(chunk)}) AND rel_type IN ({args.add_all(rel_types)})"
                f" AND room_id = $1 AND redacted_by IS NULL AND stream_ordering <= $2 AND {_LIVE}"
                " ORDER BY stream_ordering",
                *args.values,
            )
            out.extend(ChildRow(r[0], r[1], r[2], int(r[3])) for r in rows)
        out.sort(key=lambda row: row.stream_ordering)
        return out

    async def thread_summaries(
        self, room_id: str, root_ids: Sequence[str], user_id: str, *, upto: int
    ) -> dict[str, ThreadSummaryRow]:
        out: dict[str, ThreadSummaryRow] = {}
        for start in range(0, len(root_ids), _IN_CHUNK):
            chunk = root_ids[start : start + _IN_CHUNK]
            args = _Args(room_id, upto, user_id)
            rows = await self.db.fetch(
                "SELECT relates_to_id, COUNT(*), MAX(stream_ordering),"
                " MAX(CASE WHEN sender = $3 THEN 1 ELSE 0 END) FROM events"
                f" WHERE relates_to_id IN ({args.add_all(chunk)}) AND rel_type = 'm.thread'"
                f" AND room_id = $1 AND redacted_by IS NULL AND stream_ordering <= $2 AND {_LIVE}"
                " GROUP BY relates_to_id",
                *args.values,
            )
            for r in rows:
                out[r[0]] = ThreadSummaryRow(r[0], int(r[1]), int(r[2]), bool(r[3]))
        return out

    async def event_ids_at(self, orderings: Sequence[int]) -> dict[int, str]:
        """stream_ordering -> event_id (stream orderings are unique)."""
        out: dict[int, str] = {}
        for start in range(0, len(orderings), _IN_CHUNK):
            chunk = orderings[start : start + _IN_CHUNK]
            args = _Args()
            rows = await self.db.fetch(
                "SELECT stream_ordering, event_id FROM events"
                f" WHERE stream_ordering IN ({args.add_all(chunk)})",
                *args.values,
            )
            out.update({int(r[0]): r[1] for r in rows})
        return out

    async def list_thread_roots(
        self,
        room_id: str,
        *,
        upto: int,
        before: int,
        limit: int,
        participant: str | None = None,
    ) -> list[ThreadRootRow]:
        """Thread roots of the room, most recent thread activity first, whose latest reply (at or
        before `upto`) is at or before `before`. With `participant`, only threads that user
        started or replied to."""
        args = _Args(room_id, upto, before)
        participated = ""
        if participant is not None:
            u = args.add(participant)
            participated = (
                f" AND (r.sender = {u} OR EXISTS (SELECT 1 FROM events p"
                " WHERE p.relates_to_id = t.relates_to_id"
                f" AND p.rel_type = 'm.thread' AND p.room_id = $1 AND p.sender = {u}"
                " AND p.redacted_by IS NULL AND p.stream_ordering <= $2))"
            )
        rows = await self.db.fetch(
            "SELECT t.relates_to_id, MAX(t.stream_ordering) AS latest FROM events t"
            " JOIN events r ON r.event_id = t.relates_to_id"
            " WHERE t.room_id = $1 AND t.rel_type = 'm.thread' AND t.redacted_by IS NULL"
            f" AND t.stream_ordering <= $2 AND {_LIVE_T}"
            f" AND r.room_id = $1 AND r.rel_type IS NULL AND NOT r.outlier{participated}"
            " GROUP BY t.relates_to_id HAVING MAX(t.stream_ordering) <= $3"
            f" ORDER BY latest DESC, t.relates_to_id LIMIT {args.add(limit)}",
            *args.values,
        )
        return [ThreadRootRow(r[0], int(r[1])) for r in rows]

    # -- state -----------------------------------------------------------------------------------

    async def member_event_ids_at(self, room_id: str, user_ids: Sequence[str], position: int) -> list[str]:
        """The m.room.member event ids of `user_ids` in the room state after stream `position`."""
        out: list[str] = []
        for start in range(0, len(user_ids), _IN_CHUNK):
            chunk = user_ids[start : start + _IN_CHUNK]
            args = _Args(room_id, position)
            rows = await self.db.fetch(
                "SELECT d.event_id FROM state_deltas d WHERE d.room_id = $1 AND d.type = 'm.room.member'"
                f" AND d.state_key IN ({args.add_all(chunk)}) AND d.event_id IS NOT NULL"
                " AND d.stream_ordering = (SELECT MAX(x.stream_ordering) FROM state_deltas x"
                " WHERE x.room_id = $1 AND x.type = 'm.room.member' AND x.state_key = d.state_key"
                " AND x.stream_ordering <= $2)",
                *args.values,
            )
            out.extend(r[0] for r in rows)
        return out
