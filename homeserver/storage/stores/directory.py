"""Room directory queries: aliases (room_aliases) and the small slice of current state a published
room entry or a space summary needs (rooms.is_public itself is in RoomStore)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class StateRef:
    room_id: str
    type: str
    state_key: str
    event_id: str


def _placeholders(count: int, start: int = 1) -> str:
    return ", ".join(f"${i}" for i in range(start, start + count))


class DirectoryStore:
    # Bound on ids per IN (...) list (SQLite's default host-parameter limit is 32766).
    CHUNK = 500

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- aliases ---------------------------------------------------------------------------------

    async def insert_alias(self, alias: str, room_id: str, creator: str, now: int) -> bool:
        """Create the alias; False (and no change) when it is taken, also under a concurrent insert."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (room_alias) DO NOTHING RETURNING room_alias",
                alias,
                room_id,
                creator,
                now,
            )
        return row is not None

    async def delete_alias(self, alias: str) -> str | None:
        """Delete the alias; the room id it pointed to, or None when it did not exist."""
        # Through a transaction: a statement that writes must run on the writer connection.
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "DELETE FROM room_aliases WHERE room_alias = $1 RETURNING room_id", alias
            )
        return row[0] if row else None

    async def list_joined_servers(self, room_id: str) -> list[str]:
        """Server names of the users currently joined to the room."""
        position = "instr" if self.db.dialect == "sqlite" else "strpos"
        rows = await self.db.fetch(
            f"SELECT DISTINCT substr(user_id, {position}(user_id, ':') + 1) FROM room_memberships"
            " WHERE room_id = $1 AND membership = 'join'",
            room_id,
        )
        return [r[0] for r in rows]

    # -- summaries of given rooms ----------------------------------------------------------------

    async def list_state(
        self, room_ids: Sequence[str], types: Sequence[str], keyed_types: Sequence[str] = ()
    ) -> list[StateRef]:
        """Current state events of `types` (state key "") and of `keyed_types` (any state key)."""
        result: list[StateRef] = []
        for start in range(0, len(room_ids), self.CHUNK):
            chunk = list(room_ids[start : start + self.CHUNK])
            n = len(chunk)
            clauses = [f"(state_key = '' AND type IN ({_placeholders(len(types), n + 1)}))"]
            if keyed_types:
                clauses.append(f"type IN ({_placeholders(len(keyed_types), n + len(types) + 1)})")
            rows = await self.db.fetch(
                "SELECT room_id, type, state_key, event_id FROM current_state"
                f" WHERE room_id IN ({_placeholders(n)}) AND ({' OR '.join(clauses)})",
                *chunk,
                *types,
                *keyed_types,
            )
            result.extend(StateRef(r[0], r[1], r[2], r[3]) for r in rows)
        return result

    async def count_joined_members(self, room_ids: Sequence[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for start in range(0, len(room_ids), self.CHUNK):
            chunk = list(room_ids[start : start + self.CHUNK])
            rows = await self.db.fetch(
                "SELECT room_id, COUNT(*) FROM room_memberships"
                f" WHERE room_id IN ({_placeholders(len(chunk))}) AND membership = 'join' GROUP BY room_id",
                *chunk,
            )
            counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    async def list_known_rooms(self, room_ids: Sequence[str]) -> set[str]:
        """Which of `room_ids` this server has (a rooms row)."""
        known: set[str] = set()
        for start in range(0, len(room_ids), self.CHUNK):
            chunk = list(room_ids[start : start + self.CHUNK])
            rows = await self.db.fetch(
                f"SELECT room_id FROM rooms WHERE room_id IN ({_placeholders(len(chunk))})", *chunk
            )
            known.update(r[0] for r in rows)
        return known
