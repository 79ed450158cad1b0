"""event_edges, event_auth, state_groups, state_group_entries, event_state: the DAG and the state
at each event.

A state group is a room state stored as a delta against a previous group; every event records the
group of the state before it and after it. The persister allocates group ids itself (it is the one
writer) and writes everything here inside its group-commit transaction with `*_txn` methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Connection, Database

StateKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class NewStateGroup:
    id: int
    room_id: str
    prev_group: int | None
    hops: int
    # (type, state_key) -> event_id, or None for a key this state no longer has
    delta: dict[StateKey, str | None]


@dataclass(frozen=True, slots=True)
class EventStateRow:
    event_id: str
    room_id: str
    before_group: int | None
    after_group: int | None


# Newest group first down its chain of prev_groups (bounded by the persister's MAX_HOPS).
_CHAIN = (
    "WITH RECURSIVE chain(id, prev) AS ("
    " SELECT id, prev_group FROM state_groups WHERE id = $1"
    " UNION ALL SELECT g.id, g.prev_group FROM state_groups g JOIN chain ON g.id = chain.prev)"
)


class StateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def max_group_id(self) -> int:
        return int(await self.db.fetchval("SELECT COALESCE(MAX(id), 0) FROM state_groups") or 0)

    # -- reads -----------------------------------------------------------------------------------

    async def get_group_state(self, group: int | None) -> dict[StateKey, str]:
        """The full state of a group (the empty state for None)."""
        if group is None:
            return {}
        rows = await self.db.fetch(
            _CHAIN + " SELECT e.state_group, e.type, e.state_key, e.event_id FROM state_group_entries e"
            " WHERE e.state_group IN (SELECT id FROM chain)",
            group,
        )
        state: dict[StateKey, str] = {}
        # Group ids grow along a chain: apply the oldest delta first, newer ones override.
        for row in sorted(rows, key=lambda r: int(r[0])):
            key = (row[1], row[2])
            if row[3] is None:
                state.pop(key, None)
            else:
                state[key] = row[3]
        return state

    async def get_group_state_filtered(
        self, group: int | None, types: Sequence[str], member_server: str | None = None
    ) -> dict[StateKey, str]:
        """Part of a group's state: the keys of `types`, and the members of `member_server`
        (their user ids end in ":" + it), without reading the rest of a large room's state."""
        if group is None:
            return {}
        args: list[object] = [group]
        conditions = []
        if types:
            placeholders = ", ".join(f"${len(args) + i + 1}" for i in range(len(types)))
            args.extend(types)
            conditions.append(f"e.type IN ({placeholders})")
        if member_server is not None:
            suffix = ":" + member_server
            args.extend(["m.room.member", len(suffix), suffix])
            n = len(args)
            conditions.append(
                f"(e.type = ${n - 2} AND substr(e.state_key, length(e.state_key) - ${n - 1} + 1) = ${n})"
            )
        if not conditions:
            return {}
        rows = await self.db.fetch(
            _CHAIN + " SELECT e.state_group, e.type, e.state_key, e.event_id FROM state_group_entries e"
            f" WHERE e.state_group IN (SELECT id FROM chain) AND ({' OR '.join(conditions)})",
            *args,
        )
        state: dict[StateKey, str] = {}
        for row in sorted(rows, key=lambda r: int(r[0])):
            key = (row[1], row[2])
            if row[3] is None:
                state.pop(key, None)
            else:
                state[key] = row[3]
        return state

    async def get_group_hops(self, group: int) -> int | None:
        value = await self.db.fetchval("SELECT hops FROM state_groups WHERE id = $1", group)
        return int(value) if value is not None else None

    async def get_event_groups(self, event_ids: Sequence[str]) -> dict[str, EventStateRow]:
        if not event_ids:
            return {}
        placeholders = ", ".join(f"${i + 1}" for i in range(len(event_ids)))
        rows = await self.db.fetch(
            "SELECT event_id, room_id, before_group, after_group FROM event_state"
            f" WHERE event_id IN ({placeholders})",
            *event_ids,
        )
        return {
            r[0]: EventStateRow(
                r[0],
                r[1],
                int(r[2]) if r[2] is not None else None,
                int(r[3]) if r[3] is not None else None,
            )
            for r in rows
        }

    async def get_current_group(self, room_id: str) -> int | None:
        value = await self.db.fetchval("SELECT current_state_group FROM rooms WHERE room_id = $1", room_id)
        return int(value) if value is not None else None

    async def get_prev_event_ids(self, event_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT prev_event_id FROM event_edges WHERE event_id = $1 ORDER BY prev_event_id", event_id
        )
        return [r[0] for r in rows]

    async def auth_chain_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Every event in the auth chains of `event_ids` (not the events themselves)."""
        found: set[str] = set()
        frontier = list(event_ids)
        while frontier:
            chunk, frontier = frontier[:500], frontier[500:]
            placeholders = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            rows = await self.db.fetch(
                f"SELECT auth_id FROM event_auth WHERE event_id IN ({placeholders})", *chunk
            )
            for (auth_id,) in rows:
                if auth_id not in found:
                    found.add(auth_id)
                    frontier.append(auth_id)
        return found

    async def auth_edges(self, event_ids: Sequence[str]) -> dict[str, list[str]]:
        """One level of the auth-chain index: event id -> its auth event ids. Events without a row
        (create events, events not committed yet) are absent: callers read those from the event."""
        edges: dict[str, list[str]] = {}
        ids = list(dict.fromkeys(event_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            placeholders = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            rows = await self.db.fetch(
                f"SELECT event_id, auth_id FROM event_auth WHERE event_id IN ({placeholders})", *chunk
            )
            for event_id, auth_id in rows:
                edges.setdefault(event_id, []).append(auth_id)
        return edges

    async def rejected_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        """The ones among `event_ids` stored as rejected (never usable as auth events)."""
        found: set[str] = set()
        ids = list(dict.fromkeys(event_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            placeholders = ", ".join(f"${i + 1}" for i in range(len(chunk)))
            rows = await self.db.fetch(
                f"SELECT event_id FROM events WHERE event_id IN ({placeholders})"
                " AND rejected_reason IS NOT NULL",
                *chunk,
            )
            found.update(r[0] for r in rows)
        return found

    # -- writes (inside the persister's transaction) -----------------------------------------------

    async def insert_groups_txn(self, conn: Connection, groups: Sequence[NewStateGroup]) -> None:
        if not groups:
            return
        await conn.executemany(
            "INSERT INTO state_groups (id, room_id, prev_group, hops) VALUES ($1, $2, $3, $4)",
            [(g.id, g.room_id, g.prev_group, g.hops) for g in groups],
        )
        entries = [(g.id, k[0], k[1], v) for g in groups for k, v in g.delta.items()]
        if entries:
            await conn.executemany(
                "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
                " VALUES ($1, $2, $3, $4)",
                entries,
            )

    async def insert_event_state_txn(self, conn: Connection, rows: Sequence[EventStateRow]) -> None:
        if rows:
            await conn.executemany(
                "INSERT INTO event_state (event_id, room_id, before_group, after_group)"
                " VALUES ($1, $2, $3, $4)",
                [(r.event_id, r.room_id, r.before_group, r.after_group) for r in rows],
            )

    async def insert_edges_txn(
        self,
        conn: Connection,
        edges: Sequence[tuple[str, str, str]],
        auth_edges: Sequence[tuple[str, str, str]],
    ) -> None:
        """edges: (event_id, prev_event_id, room_id); auth_edges: (event_id, auth_id, room_id)."""
        if edges:
            await conn.executemany(
                "INSERT INTO event_edges (event_id, prev_event_id, room_id) VALUES ($1, $2, $3)", edges
            )
        if auth_edges:
            await conn.executemany(
                "INSERT INTO event_auth (event_id, auth_id, room_id) VALUES ($1, $2, $3)", auth_edges
            )

    async def set_current_group_txn(self, conn: Connection, room_id: str, group: int | None) -> None:
        await conn.execute("UPDATE rooms SET current_state_group = $2 WHERE room_id = $1", room_id, group)
