"""Media repository tables: media, media_thumbnails, media_scan_rejections, url_previews.

`media` holds local uploads (origin = our server name) and the cache of remote media
(origin = the remote server; user_id NULL), keyed by (origin, media_id) alike, so quarantine,
protection and the admin API treat both the same way."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Row

_MEDIA_COLUMNS = (
    "origin, media_id, user_id, media_type, upload_name, media_length, created_ts, uploaded_ts,"
    " unused_expires_ts, sha256, filesystem_id, authenticated, url_cache, quarantined_by,"
    " safe_from_quarantine, last_access_ts"
)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    origin: str
    media_id: str
    user_id: str | None
    media_type: str | None
    upload_name: str | None
    media_length: int | None
    created_ts: int
    uploaded_ts: int | None
    unused_expires_ts: int | None
    sha256: str | None
    filesystem_id: str
    authenticated: bool
    url_cache: str | None
    quarantined_by: str | None
    safe_from_quarantine: bool
    last_access_ts: int | None

    @property
    def uploaded(self) -> bool:
        return self.uploaded_ts is not None


@dataclass(frozen=True, slots=True)
class ThumbnailInfo:
    width: int
    height: int
    method: str
    media_type: str
    animated: bool
    length: int


@dataclass(frozen=True, slots=True)
class UrlPreviewRow:
    url: str
    fetched_ts: int
    expires_ts: int
    og: str | None
    error_status: int | None
    error_code: str | None
    error: str | None
    media_id: str | None


def _media(row: Row) -> MediaInfo:
    return MediaInfo(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        None if row[5] is None else int(row[5]),
        int(row[6]),
        None if row[7] is None else int(row[7]),
        None if row[8] is None else int(row[8]),
        row[9],
        row[10],
        bool(row[11]),
        row[12],
        row[13],
        bool(row[14]),
        None if row[15] is None else int(row[15]),
    )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- media rows ----------------------------------------------------------------------------

    async def get_media(self, origin: str, media_id: str) -> MediaInfo | None:
        row = await self.db.fetchrow(
            f"SELECT {_MEDIA_COLUMNS} FROM media WHERE origin = $1 AND media_id = $2", origin, media_id
        )
        return _media(row) if row else None

    async def insert_media(
        self,
        *,
        origin: str,
        media_id: str,
        user_id: str | None,
        media_type: str | None,
        upload_name: str | None,
        media_length: int | None,
        created_ts: int,
        uploaded_ts: int | None,
        unused_expires_ts: int | None,
        sha256: str | None,
        filesystem_id: str,
        authenticated: bool,
        url_cache: str | None = None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO media (origin, media_id, user_id, media_type, upload_name, media_length,"
            " created_ts, uploaded_ts, unused_expires_ts, sha256, filesystem_id, authenticated, url_cache)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            origin,
            media_id,
            user_id,
            media_type,
            upload_name,
            media_length,
            created_ts,
            uploaded_ts,
            unused_expires_ts,
            sha256,
            filesystem_id,
            authenticated,
            url_cache,
        )

    async def insert_remote_media(
        self,
        *,
        origin: str,
        media_id: str,
        media_type: str,
        upload_name: str | None,
        media_length: int,
        now_ts: int,
        sha256: str,
        filesystem_id: str,
        authenticated: bool,
    ) -> bool:
        """Cache a fetched remote item; False when another fetch (another worker) cached it first."""
        async with self.db.transaction() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO media (origin, media_id, user_id, media_type, upload_name, media_length,"
                " created_ts, uploaded_ts, unused_expires_ts, sha256, filesystem_id, authenticated,"
                " last_access_ts) VALUES ($1, $2, NULL, $3, $4, $5, $6, $6, NULL, $7, $8, $9, $6)"
                " ON CONFLICT (origin, media_id) DO NOTHING RETURNING media_id",
                origin,
                media_id,
                media_type,
                upload_name,
                media_length,
                now_ts,
                sha256,
                filesystem_id,
                authenticated,
            )
        return inserted is not None

    async def list_purgeable_remote_media(
        self, local_origin: str, before_ts: int, limit: int = 500
    ) -> list[tuple[str, str]]:
        """Cached remote media not accessed since `before_ts`: (origin, media_id). Quarantined and
        protected items stay, so a quarantine is not undone by fetching the media again."""
        rows = await self.db.fetch(
            "SELECT origin, media_id FROM media WHERE origin <> $1"
            " AND COALESCE(last_access_ts, created_ts) < $2"
            " AND quarantined_by IS NULL AND NOT safe_from_quarantine"
            " ORDER BY origin, media_id LIMIT $3",
            local_origin,
            before_ts,
            limit,
        )
        return [(r[0], r[1]) for r in rows]

    async def complete_pending_upload(
        self,
        origin: str,
        media_id: str,
        *,
        media_type: str,
        upload_name: str | None,
        media_length: int,
        uploaded_ts: int,
        sha256: str,
    ) -> bool:
        """Fill in a /create placeholder; False when another upload got there first."""
        async with self.db.transaction() as conn:
            uploaded = await conn.fetchval(
                "SELECT uploaded_ts FROM media WHERE origin = $1 AND media_id = $2", origin, media_id
            )
            if uploaded is not None:
                return False
            await conn.execute(
                "UPDATE media SET media_type = $3, upload_name = $4, media_length = $5, uploaded_ts = $6,"
                " sha256 = $7, unused_expires_ts = NULL WHERE origin = $1 AND media_id = $2",
                origin,
                media_id,
                media_type,
                upload_name,
                media_length,
                uploaded_ts,
                sha256,
            )
            return True

    async def count_pending_uploads(self, user_id: str, now_ts: int) -> int:
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM media WHERE user_id = $1 AND uploaded_ts IS NULL"
                " AND unused_expires_ts > $2",
                user_id,
                now_ts,
            )
            or 0
        )

    async def list_expired_pending(self, now_ts: int, limit: int = 500) -> list[MediaInfo]:
        rows = await self.db.fetch(
            f"SELECT {_MEDIA_COLUMNS} FROM media WHERE uploaded_ts IS NULL AND unused_expires_ts <= $1"
            " LIMIT $2",
            now_ts,
            limit,
        )
        return [_media(r) for r in rows]

    async def uploaded_bytes_since(self, user_id: str, since_ts: int) -> int:
        """Bytes the user uploaded from `since_ts` on (for `media_upload_limits`)."""
        return int(
            await self.db.fetchval(
                "SELECT COALESCE(SUM(media_length), 0) FROM media WHERE user_id = $1 AND created_ts >= $2"
                " AND media_length IS NOT NULL AND url_cache IS NULL",
                user_id,
                since_ts,
            )
            or 0
        )

    async def touch_media(self, origin: str, media_id: str, now_ts: int) -> None:
        await self.db.execute(
            "UPDATE media SET last_access_ts = $3 WHERE origin = $1 AND media_id = $2",
            origin,
            media_id,
            now_ts,
        )

    async def list_media_by_user(
        self, user_id: str, limit: int = 1000, after_ts: int = -1
    ) -> list[MediaInfo]:
        rows = await self.db.fetch(
            f"SELECT {_MEDIA_COLUMNS} FROM media WHERE user_id = $1 AND created_ts > $2"
            " ORDER BY created_ts, media_id LIMIT $3",
            user_id,
            after_ts,
            limit,
        )
        return [_media(r) for r in rows]

    async def count_other_uses_of_file(self, origin: str, media_id: str, filesystem_id: str) -> int:
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM media WHERE filesystem_id = $3 AND NOT (origin = $1 AND media_id = $2)",
                origin,
                media_id,
                filesystem_id,
            )
            or 0
        )

    async def delete_media(self, origin: str, media_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM media_thumbnails WHERE origin = $1 AND media_id = $2", origin, media_id
            )
            await conn.execute("DELETE FROM media WHERE origin = $1 AND media_id = $2", origin, media_id)

    # -- quarantine ----------------------------------------------------------------------------

    async def set_quarantined(self, origin: str, media_id: str, quarantined_by: str | None) -> bool:
        """Quarantine (or release, with None) one item; False when unknown or protected."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT safe_from_quarantine FROM media WHERE origin = $1 AND media_id = $2",
                origin,
                media_id,
            )
            if row is None or (quarantined_by is not None and bool(row[0])):
                return False
            await conn.execute(
                "UPDATE media SET quarantined_by = $3 WHERE origin = $1 AND media_id = $2",
                origin,
                media_id,
                quarantined_by,
            )
            return True

    async def quarantined_by_for_hash(self, sha256: str) -> str | None:
        """Who quarantined some item with this content, if anyone did."""
        value = await self.db.fetchval(
            "SELECT quarantined_by FROM media WHERE sha256 = $1 AND quarantined_by IS NOT NULL LIMIT 1",
            sha256,
        )
        return str(value) if value is not None else None

    async def quarantine_by_user(self, user_id: str, quarantined_by: str) -> int:
        async with self.db.transaction() as conn:
            count = await conn.fetchval(
                "SELECT COUNT(*) FROM media WHERE user_id = $1 AND NOT safe_from_quarantine"
                " AND quarantined_by IS NULL",
                user_id,
            )
            await conn.execute(
                "UPDATE media SET quarantined_by = $2 WHERE user_id = $1 AND NOT safe_from_quarantine"
                " AND quarantined_by IS NULL",
                user_id,
                quarantined_by,
            )
            return int(count or 0)

    async def set_safe_from_quarantine(self, origin: str, media_id: str, safe: bool) -> bool:
        async with self.db.transaction() as conn:
            if not await conn.fetchval(
                "SELECT 1 FROM media WHERE origin = $1 AND media_id = $2", origin, media_id
            ):
                return False
            await conn.execute(
                "UPDATE media SET safe_from_quarantine = $3 WHERE origin = $1 AND media_id = $2",
                origin,
                media_id,
                safe,
            )
            return True

    # -- thumbnails ----------------------------------------------------------------------------

    async def list_thumbnails(self, origin: str, media_id: str) -> list[ThumbnailInfo]:
        rows = await self.db.fetch(
            "SELECT width, height, method, media_type, animated, length FROM media_thumbnails"
            " WHERE origin = $1 AND media_id = $2",
            origin,
            media_id,
        )
        return [ThumbnailInfo(int(r[0]), int(r[1]), r[2], r[3], bool(r[4]), int(r[5])) for r in rows]

    async def insert_thumbnail(self, origin: str, media_id: str, thumb: ThumbnailInfo, now_ts: int) -> None:
        """Record a generated thumbnail (a no-op when another worker recorded it first)."""
        await self.db.execute(
            "INSERT INTO media_thumbnails (origin, media_id, width, height, method, media_type,"
            " animated, length, created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT DO NOTHING",
            origin,
            media_id,
            thumb.width,
            thumb.height,
            thumb.method,
            thumb.media_type,
            thumb.animated,
            thumb.length,
            now_ts,
        )

    # -- virus-scan audit trail ----------------------------------------------------------------

    async def insert_scan_rejection(
        self,
        *,
        rejection_id: str,
        user_id: str | None,
        ts: int,
        client_ip: str | None,
        sha256: str,
        media_length: int,
        media_type: str | None,
        upload_name: str | None,
        signature: str,
    ) -> None:
        await self.db.execute(
            "INSERT INTO media_scan_rejections (rejection_id, user_id, ts, client_ip, sha256,"
            " media_length, media_type, upload_name, signature)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            rejection_id,
            user_id,
            ts,
            client_ip,
            sha256,
            media_length,
            media_type,
            upload_name,
            signature,
        )

    async def list_scan_rejections(self, limit: int = 100) -> list[dict[str, object]]:
        rows = await self.db.fetch(
            "SELECT rejection_id, user_id, ts, client_ip, sha256, media_length, media_type, upload_name,"
            " signature FROM media_scan_rejections ORDER BY ts DESC LIMIT $1",
            limit,
        )
        keys = (
            "rejection_id",
            "user_id",
            "ts",
            "client_ip",
            "sha256",
            "media_length",
            "media_type",
            "upload_name",
            "signature",
        )
        return [dict(zip(keys, tuple(r), strict=True)) for r in rows]

    # -- URL previews --------------------------------------------------------------------------

    async def get_url_preview(self, url: str) -> UrlPreviewRow | None:
        row = await self.db.fetchrow(
            "SELECT url, fetched_ts, expires_ts, og, error_status, error_code, error, media_id"
            " FROM url_previews WHERE url = $1",
            url,
        )
        if row is None:
            return None
        return UrlPreviewRow(
            row[0],
            int(row[1]),
            int(row[2]),
            row[3],
            None if row[4] is None else int(row[4]),
            row[5],
            row[6],
            row[7],
        )

    async def upsert_url_preview(self, row: UrlPreviewRow) -> None:
        await self.db.execute(
            "INSERT INTO url_previews (url, fetched_ts, expires_ts, og, error_status, error_code,"
            " error, media_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (url) DO UPDATE SET fetched_ts = excluded.fetched_ts,"
            " expires_ts = excluded.expires_ts, og = excluded.og, error_status = excluded.error_status,"
            " error_code = excluded.error_code, error = excluded.error, media_id = excluded.media_id",
            row.url,
            row.fetched_ts,
            row.expires_ts,
            row.og,
            row.error_status,
            row.error_code,
            row.error,
            row.media_id,
        )

    async def delete_expired_url_previews(self, now_ts: int) -> None:
        await self.db.execute("DELETE FROM url_previews WHERE expires_ts <= $1", now_ts)
