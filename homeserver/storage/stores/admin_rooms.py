"""Admin queries over rooms (listing, counts, blocks) and the batched deletes of room purges,
history purges and server-notice bookkeeping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.core import json as hjson
from homeserver.storage.database import Connection, Database

# The state whose content the room list shows (one query for every room).
SUMMARY_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.encryption",
    "m.room.tombstone",
)

# Tables holding rows of a room, deleted when the room is purged (events go first, in batches).
# A new table with a room_id column that must not outlive its room belongs here.
ROOM_TABLES = (
    "event_push_actions",
    "event_push_actions_staging",
    "event_txn_ids",
    "receipts",
    "current_state",
    "state_deltas",
    "room_memberships",
    "room_forward_extremities",
    "event_edges",
    "event_auth",
    "event_state",
    "room_aliases",
    "e2e_room_keys",
    "user_directory_public_rooms",
    "rooms",
)


@dataclass(frozen=True, slots=True)
class RoomCounts:
    joined_members: int
    joined_local_members: int
    state_events: int


class AdminRoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- listing -----------------------------------------------------------------------------------

    async def list_rooms(self) -> list[tuple[str, str, str | None, bool]]:
        """(room_id, room_version, creator, is_public) of every room."""
        rows = await self.db.fetch("SELECT room_id, room_version, creator, is_public FROM rooms")
        return [(r[0], r[1], r[2], bool(r[3])) for r in rows]

    async def summary_state(self, room_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """room_id -> event type -> content, for the SUMMARY_TYPES state (state_key "")."""
        marks = ", ".join(f"${i + 1}" for i in range(len(SUMMARY_TYPES)))
        sql = (
            "SELECT cs.room_id, cs.type, e.json FROM current_state cs"
            " JOIN events e ON e.event_id = cs.event_id"
            f" WHERE cs.state_key = '' AND cs.type IN ({marks})"
        )
        args: list[Any] = list(SUMMARY_TYPES)
        if room_ids is not None:
            if not room_ids:
                return {}
            more = ", ".join(f"${len(args) + i + 1}" for i in range(len(room_ids)))
            sql += f" AND cs.room_id IN ({more})"
            args.extend(room_ids)
        out: dict[str, dict[str, Any]] = {}
        for room_id, etype, raw in await self.db.fetch(sql, *args):
            content = hjson.loads(raw).get("content")
            out.setdefault(room_id, {})[etype] = content if isinstance(content, dict) else {}
        return out

    async def counts(self, server_name: str, room_id: str | None = None) -> dict[str, RoomCounts]:
        """Joined / joined local members and current state events, of one room or of all."""
        suffix = "%:" + server_name
        only = " AND room_id = $2" if room_id is not None else ""
        extra = [room_id] if room_id is not None else []
        members = await self.db.fetch(
            "SELECT room_id, COUNT(*), SUM(CASE WHEN user_id LIKE $1 THEN 1 ELSE 0 END)"
            f" FROM room_memberships WHERE membership = 'join'{only} GROUP BY room_id",
            suffix,
            *extra,
        )
        states = await self.db.fetch(
            "SELECT room_id, COUNT(*) FROM current_state"
            + (" WHERE room_id = $1" if room_id is not None else "")
            + " GROUP BY room_id",
            *extra,
        )
        joined = {r[0]: (int(r[1]), int(r[2] or 0)) for r in members}
        out: dict[str, RoomCounts] = {}
        for rid, n_state in states:
            j, local = joined.get(rid, (0, 0))
            out[rid] = RoomCounts(j, local, int(n_state))
        return out

    async def count_local_devices_in_room(self, room_id: str, server_name: str) -> int:
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM devices d JOIN room_memberships m ON m.user_id = d.user_id"
                " WHERE m.room_id = $1 AND m.membership = 'join' AND m.user_id LIKE $2",
                room_id,
                "%:" + server_name,
            )
            or 0
        )

    async def all_local_members_forgot(self, room_id: str, server_name: str) -> bool:
        remaining = await self.db.fetchval(
            "SELECT COUNT(*) FROM room_memberships WHERE room_id = $1 AND user_id LIKE $2 AND NOT forgotten",
            room_id,
            "%:" + server_name,
        )
        return not remaining

    async def list_extremities(self, room_id: str) -> list[tuple[str, int, int]]:
        """(event_id, depth, origin_server_ts) of each forward extremity."""
        rows = await self.db.fetch(
            "SELECT f.event_id, e.depth, e.origin_server_ts FROM room_forward_extremities f"
            " JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1 ORDER BY e.depth DESC",
            room_id,
        )
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    async def keep_only_extremity(self, room_id: str, event_id: str) -> int:
        async with self.db.transaction() as conn:
            count = await conn.fetchval(
                "SELECT COUNT(*) FROM room_forward_extremities WHERE room_id = $1 AND event_id <> $2",
                room_id,
                event_id,
            )
            await conn.execute(
                "DELETE FROM room_forward_extremities WHERE room_id = $1 AND event_id <> $2",
                room_id,
                event_id,
            )
        return int(count or 0)

    # -- blocked rooms -------------------------------------------------------------------------------

    async def get_block(self, room_id: str) -> str | None:
        """The admin who blocked the room, or None when it is not blocked."""
        value = await self.db.fetchval("SELECT user_id FROM blocked_rooms WHERE room_id = $1", room_id)
        return str(value) if value is not None else None

    async def set_block(self, room_id: str, user_id: str, now: int) -> None:
        async with self.db.transaction() as conn:
            await self.set_block_txn(conn, room_id, user_id, now)

    async def set_block_txn(self, conn: Connection, room_id: str, user_id: str, now: int) -> None:
        if await conn.fetchval("SELECT 1 FROM blocked_rooms WHERE room_id = $1", room_id) is None:
            await conn.execute(
                "INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES ($1, $2, $3)",
                room_id,
                user_id,
                now,
            )

    async def delete_block(self, room_id: str) -> None:
        await self.db.execute("DELETE FROM blocked_rooms WHERE room_id = $1", room_id)

    # -- purges --------------------------------------------------------------------------------------

    async def list_room_event_batch(self, room_id: str, limit: int) -> list[tuple[str, int]]:
        rows = await self.db.fetch(
            "SELECT event_id, stream_ordering FROM events WHERE room_id = $1"
            " ORDER BY stream_ordering LIMIT $2",
            room_id,
            limit,
        )
        return [(r[0], int(r[1])) for r in rows]

    async def list_history_batch(
        self,
        room_id: str,
        *,
        after: int,
        before: int,
        keep: int,
        local_suffix: str | None,
        limit: int,
    ) -> list[tuple[str, int]]:
        """Non-state events of the room with after < stream_ordering < before, except `keep` (the
        room's latest event) and, when `local_suffix` is given, events sent by local users."""
        sql = (
            "SELECT event_id, stream_ordering FROM events WHERE room_id = $1 AND stream_ordering > $2"
            " AND stream_ordering < $3 AND stream_ordering <> $4 AND state_key IS NULL"
        )
        args: list[Any] = [room_id, after, before, keep]
        if local_suffix is not None:
            args.append("%" + local_suffix)
            sql += f" AND sender NOT LIKE ${len(args)}"
        args.append(limit)
        sql += f" ORDER BY stream_ordering LIMIT ${len(args)}"
        rows = await self.db.fetch(sql, *args)
        return [(r[0], int(r[1])) for r in rows]

    async def delete_events_txn(self, conn: Connection, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            await conn.execute("DELETE FROM event_push_actions WHERE event_id = $1", event_id)
            await conn.execute("DELETE FROM event_push_actions_staging WHERE event_id = $1", event_id)
            # The DAG rows of the event itself; state groups stay (other events share them).
            await conn.execute("DELETE FROM event_state WHERE event_id = $1", event_id)
            await conn.execute("DELETE FROM event_auth WHERE event_id = $1", event_id)
            await conn.execute("DELETE FROM event_edges WHERE event_id = $1", event_id)
            await conn.execute("DELETE FROM events WHERE event_id = $1", event_id)

    async def delete_room_rows_txn(self, conn: Connection, room_id: str) -> None:
        for table in ROOM_TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE room_id = $1", room_id)
        # State groups last: their entries are keyed by group, not by room.
        await conn.execute(
            "DELETE FROM state_group_entries WHERE state_group IN"
            " (SELECT id FROM state_groups WHERE room_id = $1)",
            room_id,
        )
        await conn.execute("DELETE FROM state_groups WHERE room_id = $1", room_id)

    async def latest_event(self, room_id: str) -> int:
        return int(
            await self.db.fetchval(
                "SELECT COALESCE(MAX(stream_ordering), 0) FROM events WHERE room_id = $1", room_id
            )
            or 0
        )

    async def last_ordering_before_ts(self, room_id: str, ts: int) -> int | None:
        value = await self.db.fetchval(
            "SELECT MAX(stream_ordering) FROM events WHERE room_id = $1 AND origin_server_ts <= $2",
            room_id,
            ts,
        )
        return int(value) if value is not None else None

    async def events_with_urls(self, room_id: str) -> list[dict[str, Any]]:
        """The PDUs of the room's events that carry a content URL (events.contains_url)."""
        rows = await self.db.fetch("SELECT json FROM events WHERE room_id = $1 AND contains_url", room_id)
        return [hjson.loads(r[0]) for r in rows]

    # -- server notices ------------------------------------------------------------------------------

    async def get_notice_room(self, user_id: str) -> str | None:
        value = await self.db.fetchval("SELECT room_id FROM server_notice_rooms WHERE user_id = $1", user_id)
        return str(value) if value is not None else None

    async def set_notice_room(self, user_id: str, room_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM server_notice_rooms WHERE user_id = $1", user_id)
            await conn.execute(
                "INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2)", user_id, room_id
            )

    async def get_notice_txn(self, admin_user_id: str, txn_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT event_id FROM server_notice_txns WHERE admin_user_id = $1 AND txn_id = $2",
            admin_user_id,
            txn_id,
        )
        return str(value) if value is not None else None

    async def insert_notice_txn(self, admin_user_id: str, txn_id: str, event_id: str, now: int) -> None:
        async with self.db.transaction() as conn:
            if await conn.fetchval(
                "SELECT 1 FROM server_notice_txns WHERE admin_user_id = $1 AND txn_id = $2",
                admin_user_id,
                txn_id,
            ):
                return
            await conn.execute(
                "INSERT INTO server_notice_txns (admin_user_id, txn_id, event_id, created_ts)"
                " VALUES ($1, $2, $3, $4)",
                admin_user_id,
                txn_id,
                event_id,
                now,
            )

    async def list_local_user_ids(self, server_name: str, *, after: str, limit: int) -> list[str]:
        """Active local users in user id order, after `after` (for batched broadcasts)."""
        del server_name  # users holds local accounts only
        rows = await self.db.fetch(
            "SELECT user_id FROM users WHERE user_id > $1 AND NOT deactivated ORDER BY user_id LIMIT $2",
            after,
            limit,
        )
        return [r[0] for r in rows]
