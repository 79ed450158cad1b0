"""rooms, current_state, state_deltas, room_memberships, forward extremities, aliases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Connection, Database, Row


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    room_version: str
    creator: str | None
    created_ts: int
    is_public: bool


@dataclass(frozen=True, slots=True)
class Membership:
    room_id: str
    user_id: str
    membership: str
    event_id: str
    stream_ordering: int
    sender: str
    displayname: str | None
    avatar_url: str | None
    forgotten: bool = False


@dataclass(frozen=True, slots=True)
class StateDelta:
    stream_ordering: int
    room_id: str
    type: str
    state_key: str
    event_id: str | None
    prev_event_id: str | None = None


_DELTA_SELECT = "SELECT stream_ordering, room_id, type, state_key, event_id, prev_event_id FROM state_deltas"


def _delta(row: Row) -> StateDelta:
    return StateDelta(int(row[0]), row[1], row[2], row[3], row[4], row[5])


_MEMBER_COLS = (
    "room_id, user_id, membership, event_id, stream_ordering, sender, displayname, avatar_url, forgotten"
)


def _membership(r: Row) -> Membership:
    return Membership(
        r[0],
        r[1],
        r[2],
        r[3],
        int(r[4]),
        r[5],
        r[6],
        r[7],
        bool(r[8]),
    )


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rooms -----------------------------------------------------------------------------------

    async def get_room(self, room_id: str) -> RoomRow | None:
        row = await self.db.fetchrow(
            "SELECT room_id, room_version, creator, created_ts, is_public FROM rooms WHERE room_id = $1",
            room_id,
        )
        return RoomRow(row[0], row[1], row[2], int(row[3]), bool(row[4])) if row else None

    async def insert_room_txn(
        self, conn: Connection, room_id: str, version: str, creator: str, created_ts: int
    ) -> None:
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4)",
            room_id,
            version,
            creator,
            created_ts,
        )

    async def insert_room_if_missing_txn(
        self, conn: Connection, room_id: str, version: str, creator: str, created_ts: int
    ) -> None:
        """A room learnt over federation (joined remotely, or an invite to it): its row, once."""
        await conn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (room_id) DO NOTHING",
            room_id,
            version,
            creator,
            created_ts,
        )

    async def set_public(self, room_id: str, is_public: bool) -> None:
        await self.db.execute("UPDATE rooms SET is_public = $2 WHERE room_id = $1", room_id, is_public)

    async def list_public_room_ids(self) -> list[str]:
        rows = await self.db.fetch("SELECT room_id FROM rooms WHERE is_public ORDER BY room_id")
        return [r[0] for r in rows]

    # -- current state ---------------------------------------------------------------------------

    async def get_current_state_ids(self, room_id: str) -> dict[tuple[str, str], str]:
        rows = await self.db.fetch(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1", room_id
        )
        return {(r[0], r[1]): r[2] for r in rows}

    async def get_forward_extremities(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT event_id FROM room_forward_extremities WHERE room_id = $1", room_id
        )
        return [r[0] for r in rows]

    async def get_max_depth(self, room_id: str) -> int:
        value = await self.db.fetchval("SELECT MAX(depth) FROM events WHERE room_id = $1", room_id)
        return int(value or 0)

    async def set_forward_extremities_txn(
        self, conn: Connection, room_id: str, event_ids: Sequence[str]
    ) -> None:
        await conn.execute("DELETE FROM room_forward_extremities WHERE room_id = $1", room_id)
        await conn.executemany(
            "INSERT INTO room_forward_extremities (room_id, event_id) VALUES ($1, $2)",
            [(room_id, e) for e in event_ids],
        )

    async def upsert_current_state_txn(
        self, conn: Connection, rows: Sequence[tuple[str, str, str, str, int]]
    ) -> None:
        await conn.executemany(
            "INSERT INTO current_state (room_id, type, state_key, event_id, stream_ordering)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, type, state_key) DO UPDATE"
            " SET event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
            rows,
        )

    async def delete_current_state_txn(self, conn: Connection, rows: Sequence[tuple[str, str, str]]) -> None:
        """rows: (room_id, type, state_key) a state resolution removed from the current state."""
        await conn.executemany(
            "DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3", rows
        )

    async def insert_state_deltas_txn(
        self, conn: Connection, rows: Sequence[tuple[int, str, str, str, str | None, str | None]]
    ) -> None:
        await conn.executemany(
            "INSERT INTO state_deltas (stream_ordering, room_id, type, state_key, event_id, prev_event_id)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            rows,
        )

    async def state_deltas_between(self, room_id: str, after: int, upto: int) -> list[StateDelta]:
        rows = await self.db.fetch(
            "SELECT stream_ordering, room_id, type, state_key, event_id FROM state_deltas"
            " WHERE room_id = $1 AND stream_ordering > $2 AND stream_ordering <= $3"
            " ORDER BY stream_ordering",
            room_id,
            after,
            upto,
        )
        return [StateDelta(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    async def last_state_delta_ordering(self, room_id: str) -> int:
        """Stream ordering of the room's latest state delta (0: none)."""
        value = await self.db.fetchval(
            "SELECT MAX(stream_ordering) FROM state_deltas WHERE room_id = $1", room_id
        )
        return int(value or 0)

    async def state_deltas_after(self, room_id: str, after: int) -> list[StateDelta]:
        rows = await self.db.fetch(
            _DELTA_SELECT + " WHERE room_id = $1 AND stream_ordering > $2 ORDER BY stream_ordering",
            room_id,
            after,
        )
        return [_delta(r) for r in rows]

    async def state_deltas_after_many(self, after: Mapping[str, int]) -> dict[str, list[StateDelta]]:
        """`state_deltas_after` of many rooms (room -> its own lower bound), 100 rooms a query."""
        out: dict[str, list[StateDelta]] = {r: [] for r in after}
        rooms = list(after)
        for i in range(0, len(rooms), 100):
            chunk = rooms[i : i + 100]
            terms = " OR ".join(
                f"(room_id = ${2 * n + 1} AND stream_ordering > ${2 * n + 2})" for n in range(len(chunk))
            )
            rows = await self.db.fetch(
                _DELTA_SELECT + f" WHERE {terms} ORDER BY room_id, stream_ordering",
                *(v for r in chunk for v in (r, after[r])),
            )
            for r in rows:
                out[r[1]].append(_delta(r))
        return out

    async def state_ids_at(self, room_id: str, position: int) -> dict[tuple[str, str], str]:
        """The room state after the event at stream `position` (latest delta per key)."""
        rows = await self.db.fetch(
            "SELECT d.type, d.state_key, d.event_id FROM state_deltas d JOIN ("
            " SELECT type, state_key, MAX(stream_ordering) AS pos FROM state_deltas"
            " WHERE room_id = $1 AND stream_ordering <= $2 GROUP BY type, state_key) latest"
            " ON d.type = latest.type AND d.state_key = latest.state_key AND d.stream_ordering = latest.pos"
            " WHERE d.room_id = $1",
            room_id,
            position,
        )
        return {(r[0], r[1]): r[2] for r in rows if r[2] is not None}

    async def state_key_history(
        self, room_id: str, type: str, state_key: str
    ) -> list[tuple[int, str | None]]:
        """Every (stream_ordering, event_id) a state key took, oldest first."""
        rows = await self.db.fetch(
            "SELECT stream_ordering, event_id FROM state_deltas WHERE room_id = $1 AND type = $2"
            " AND state_key = $3 ORDER BY stream_ordering",
            room_id,
            type,
            state_key,
        )
        return [(int(r[0]), r[1]) for r in rows]

    async def state_key_histories(
        self, room_ids: Sequence[str], type: str, state_key: str
    ) -> dict[str, list[tuple[int, str | None]]]:
        """`state_key_history` of one key in many rooms (every room asked for is in the answer),
        with one query per 500 rooms instead of one per room."""
        out: dict[str, list[tuple[int, str | None]]] = {r: [] for r in room_ids}
        rooms = list(out)
        for i in range(0, len(rooms), 500):
            chunk = rooms[i : i + 500]
            marks = ", ".join(f"${n + 3}" for n in range(len(chunk)))
            rows = await self.db.fetch(
                "SELECT room_id, stream_ordering, event_id FROM state_deltas WHERE type = $1"
                f" AND state_key = $2 AND room_id IN ({marks}) ORDER BY room_id, stream_ordering",
                type,
                state_key,
                *chunk,
            )
            for r in rows:
                out[r[0]].append((int(r[1]), r[2]))
        return out

    # -- memberships -----------------------------------------------------------------------------

    async def upsert_memberships_txn(self, conn: Connection, rows: Sequence[Membership]) -> None:
        await conn.executemany(
            f"INSERT INTO room_memberships ({_MEMBER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE)"
            " ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership,"
            " event_id = excluded.event_id, stream_ordering = excluded.stream_ordering,"
            " sender = excluded.sender, displayname = excluded.displayname,"
            " avatar_url = excluded.avatar_url, forgotten = FALSE",
            [
                (
                    m.room_id,
                    m.user_id,
                    m.membership,
                    m.event_id,
                    m.stream_ordering,
                    m.sender,
                    m.displayname,
                    m.avatar_url,
                )
                for m in rows
            ],
        )

    async def list_user_memberships(self, user_id: str) -> list[Membership]:
        rows = await self.db.fetch(f"SELECT {_MEMBER_COLS} FROM room_memberships WHERE user_id = $1", user_id)
        return [_membership(r) for r in rows]

    async def get_membership(self, room_id: str, user_id: str) -> Membership | None:
        row = await self.db.fetchrow(
            f"SELECT {_MEMBER_COLS} FROM room_memberships WHERE room_id = $1 AND user_id = $2",
            room_id,
            user_id,
        )
        return _membership(row) if row else None

    async def list_room_members(self, room_id: str) -> list[Membership]:
        rows = await self.db.fetch(f"SELECT {_MEMBER_COLS} FROM room_memberships WHERE room_id = $1", room_id)
        return [_membership(r) for r in rows]

    async def set_forgotten(self, room_id: str, user_id: str) -> None:
        await self.db.execute(
            "UPDATE room_memberships SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2",
            room_id,
            user_id,
        )

    async def list_rooms_with_local_members(self, server_name: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT room_id FROM room_memberships WHERE membership = 'join' AND user_id LIKE $1",
            f"%:{server_name}",
        )
        return [r[0] for r in rows]

    # -- aliases ---------------------------------------------------------------------------------

    async def get_alias(self, alias: str) -> tuple[str, str] | None:
        row = await self.db.fetchrow("SELECT room_id, creator FROM room_aliases WHERE room_alias = $1", alias)
        return (row[0], row[1]) if row else None

    async def insert_alias(self, alias: str, room_id: str, creator: str, now: int) -> bool:
        async with self.db.transaction() as conn:
            if await conn.fetchval("SELECT 1 FROM room_aliases WHERE room_alias = $1", alias):
                return False
            await conn.execute(
                "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)",
                alias,
                room_id,
                creator,
                now,
            )
            return True

    async def insert_alias_txn(
        self, conn: Connection, alias: str, room_id: str, creator: str, now: int
    ) -> None:
        await conn.execute(
            "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)",
            alias,
            room_id,
            creator,
            now,
        )

    async def delete_alias(self, alias: str) -> None:
        await self.db.execute("DELETE FROM room_aliases WHERE room_alias = $1", alias)

    async def list_aliases(self, room_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT room_alias FROM room_aliases WHERE room_id = $1 ORDER BY room_alias", room_id
        )
        return [r[0] for r in rows]
