"""Erased users, the deletes of a GDPR erasure, the user data export, and the retention queries
(rooms with a policy, expired events in batches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.core import json as hjson
from homeserver.storage.database import Connection, Database

# Per-user rows deleted by an erasure (profile fields are cleared, the users row stays so the id is
# never reused). Devices, tokens and memberships are handled by deactivation itself.
USER_TABLES = (
    "account_data",
    "pushers",
    "push_rules",
    "push_rule_settings",
    "e2e_device_keys",
    "e2e_one_time_keys",
    "e2e_fallback_keys",
    "e2e_cross_signing_keys",
    "e2e_cross_signing_signatures",
    "e2e_room_keys",
    "e2e_room_keys_versions",
    "device_inbox",
    "user_directory",
    "user_filters",
)


class ComplianceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- erasure ------------------------------------------------------------------------------------

    async def list_erased(self) -> set[str]:
        return {r[0] for r in await self.db.fetch("SELECT user_id FROM erased_users")}

    async def is_erased(self, user_id: str) -> bool:
        return bool(await self.db.fetchval("SELECT 1 FROM erased_users WHERE user_id = $1", user_id))

    async def erase_user_rows_txn(self, conn: Connection, user_id: str) -> None:
        await conn.execute(
            "INSERT INTO erased_users (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING", user_id
        )
        for table in USER_TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", user_id)
        await conn.execute(
            "UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = $1", user_id
        )

    # -- user export ---------------------------------------------------------------------------------

    async def export_user(self, user_id: str) -> dict[str, Any]:
        """What the server holds about a user (besides media files), as JSON-ready data."""
        db = self.db
        profile = await db.fetchrow(
            "SELECT displayname, avatar_url FROM profiles WHERE user_id = $1", user_id
        )
        account_data = [
            {"room_id": r[0] or None, "type": r[1], "content": hjson.loads(r[2])}
            for r in await db.fetch(
                "SELECT room_id, type, content FROM account_data WHERE user_id = $1 ORDER BY room_id, type",
                user_id,
            )
        ]
        rooms = [
            {"room_id": r[0], "membership": r[1]}
            for r in await db.fetch(
                "SELECT room_id, membership FROM room_memberships WHERE user_id = $1 ORDER BY room_id",
                user_id,
            )
        ]
        events = [
            hjson.loads(r[0])
            for r in await db.fetch(
                "SELECT json FROM events WHERE sender = $1 ORDER BY stream_ordering", user_id
            )
        ]
        media = [
            {"media_id": r[0], "media_type": r[1], "media_length": r[2], "created_ts": r[3]}
            for r in await db.fetch(
                "SELECT media_id, media_type, media_length, created_ts FROM media WHERE user_id = $1"
                " ORDER BY created_ts",
                user_id,
            )
        ]
        devices = [
            {"device_id": r[0], "display_name": r[1]}
            for r in await db.fetch(
                "SELECT device_id, display_name FROM devices WHERE user_id = $1 ORDER BY device_id", user_id
            )
        ]
        pushers = [
            {"app_id": r[0], "pushkey": r[1], "kind": r[2]}
            for r in await db.fetch("SELECT app_id, pushkey, kind FROM pushers WHERE user_id = $1", user_id)
        ]
        return {
            "user_id": user_id,
            "profile": {"displayname": profile[0], "avatar_url": profile[1]} if profile else None,
            "account_data": account_data,
            "rooms": rooms,
            "events": events,
            "media": media,
            "devices": devices,
            "pushers": pushers,
        }

    # -- retention -----------------------------------------------------------------------------------

    async def list_room_ids(self) -> list[str]:
        return [r[0] for r in await self.db.fetch("SELECT room_id FROM rooms ORDER BY room_id")]

    async def list_retention_contents(self) -> dict[str, Any]:
        """The content of every room's current m.room.retention event (one query for all rooms,
        so scheduling purges never loads whole room states)."""
        rows = await self.db.fetch(
            "SELECT c.room_id, e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = 'm.room.retention' AND c.state_key = ''"
        )
        return {r[0]: hjson.loads(r[1]).get("content") for r in rows}

    async def list_expired_batch(
        self, room_id: str, *, before_ts: int, after: int, keep: int, limit: int
    ) -> list[tuple[str, int, str]]:
        """Non-state events of the room older than `before_ts` past stream ordering `after`, except
        `keep` (the room's latest event, which new events reference): (event_id, ordering, json)."""
        rows = await self.db.fetch(
            "SELECT event_id, stream_ordering, json FROM events WHERE room_id = $1 AND state_key IS NULL"
            " AND origin_server_ts < $2 AND stream_ordering > $3 AND stream_ordering <> $4"
            " ORDER BY stream_ordering LIMIT $5",
            room_id,
            before_ts,
            after,
            keep,
            limit,
        )
        return [(r[0], int(r[1]), r[2]) for r in rows]

    async def media_still_referenced(self, mxc: str, excluding: Sequence[str]) -> bool:
        """Whether an event other than `excluding` mentions the content URI."""
        rows = await self.db.fetch(
            "SELECT event_id FROM events WHERE contains_url AND json LIKE $1 LIMIT 50", "%" + mxc + "%"
        )
        skip = set(excluding)
        if any(r[0] not in skip for r in rows):
            return True
        return bool(await self.db.fetchval("SELECT 1 FROM profiles WHERE avatar_url = $1", mxc))

    async def list_related(
        self, room_id: str, event_ids: Sequence[str], *, keep: int
    ) -> list[tuple[str, str]]:
        """Non-state events of the room relating to one of `event_ids` (edits, reactions, threads)."""
        if not event_ids:
            return []
        marks = ", ".join(f"${i + 3}" for i in range(len(event_ids)))
        rows = await self.db.fetch(
            "SELECT event_id, json FROM events WHERE room_id = $1 AND state_key IS NULL"
            f" AND stream_ordering <> $2 AND relates_to_id IN ({marks})",
            room_id,
            keep,
            *event_ids,
        )
        return [(r[0], r[1]) for r in rows]
