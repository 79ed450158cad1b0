"""Admin queries over the media table: quarantine by room/hash, deletion candidates, usage stats."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.storage.database import Database


class AdminMediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def quarantine_ids(self, origin: str, media_ids: Sequence[str], by_user: str) -> int:
        """Quarantine these items (unless protected); the number newly quarantined."""
        count = 0
        async with self.db.transaction() as conn:
            for media_id in media_ids:
                row = await conn.fetchrow(
                    "SELECT quarantined_by, safe_from_quarantine FROM media"
                    " WHERE origin = $1 AND media_id = $2",
                    origin,
                    media_id,
                )
                if row is None or bool(row[1]) or row[0] is not None:
                    continue
                await conn.execute(
                    "UPDATE media SET quarantined_by = $3 WHERE origin = $1 AND media_id = $2",
                    origin,
                    media_id,
                    by_user,
                )
                count += 1
        return count

    async def quarantine_same_hash(self, origin: str, media_id: str, by_user: str) -> int:
        """Quarantine every unprotected item with the same SHA-256 as this one."""
        sha = await self.db.fetchval(
            "SELECT sha256 FROM media WHERE origin = $1 AND media_id = $2", origin, media_id
        )
        if sha is None:
            return 0
        async with self.db.transaction() as conn:
            count = await conn.fetchval(
                "SELECT COUNT(*) FROM media WHERE sha256 = $1 AND quarantined_by IS NULL"
                " AND NOT safe_from_quarantine",
                sha,
            )
            await conn.execute(
                "UPDATE media SET quarantined_by = $2 WHERE sha256 = $1 AND quarantined_by IS NULL"
                " AND NOT safe_from_quarantine",
                sha,
                by_user,
            )
        return int(count or 0)

    async def list_old_local_media(
        self, origin: str, *, before_ts: int, size_gt: int, keep_profiles: bool
    ) -> list[str]:
        """Local media last used before `before_ts` (never used: created before), larger than
        `size_gt`; never quarantined or protected items; with keep_profiles, not avatars."""
        sql = (
            "SELECT media_id FROM media WHERE origin = $1 AND uploaded_ts IS NOT NULL"
            " AND COALESCE(last_access_ts, created_ts) < $2 AND COALESCE(media_length, 0) > $3"
            " AND quarantined_by IS NULL AND NOT safe_from_quarantine"
        )
        if keep_profiles:
            sql += (
                " AND ('mxc://' || origin || '/' || media_id) NOT IN"
                " (SELECT avatar_url FROM profiles WHERE avatar_url IS NOT NULL)"
            )
        rows = await self.db.fetch(sql + " ORDER BY media_id", origin, before_ts, size_gt)
        return [r[0] for r in rows]

    async def user_media_stats(
        self, origin: str, *, from_ts: int | None, until_ts: int | None, search_term: str | None
    ) -> list[dict[str, Any]]:
        where = ["m.origin = $1", "m.user_id IS NOT NULL", "m.uploaded_ts IS NOT NULL"]
        args: list[Any] = [origin]
        if from_ts is not None:
            args.append(from_ts)
            where.append(f"m.created_ts >= ${len(args)}")
        if until_ts is not None:
            args.append(until_ts)
            where.append(f"m.created_ts <= ${len(args)}")
        if search_term:
            args.append(f"%{search_term.lower()}%")
            n = len(args)
            where.append(f"(LOWER(m.user_id) LIKE ${n} OR LOWER(COALESCE(p.displayname, '')) LIKE ${n})")
        rows = await self.db.fetch(
            "SELECT m.user_id, p.displayname, COUNT(*), COALESCE(SUM(m.media_length), 0)"
            " FROM media m LEFT JOIN profiles p ON p.user_id = m.user_id"
            f" WHERE {' AND '.join(where)} GROUP BY m.user_id, p.displayname",
            *args,
        )
        return [
            {"user_id": r[0], "displayname": r[1], "media_count": int(r[2]), "media_length": int(r[3])}
            for r in rows
        ]
