"""Synapse's media admin API: quarantine (by item, room, user, and by content hash), protection,
deletion (one item, or old/large local media), remote cache purge, per-user usage statistics.
Shapes follow docs/admin_api/media_admin_api.md and statistics.md."""

from __future__ import annotations

import logging
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, not_found
from homeserver.media.repository import MediaRepository
from homeserver.services.admin_rooms import AdminRoomService
from homeserver.services.audit_sink import AuditSink, NoAudit
from homeserver.storage.stores.admin_media import AdminMediaStore
from homeserver.storage.stores.media import MediaInfo

logger = logging.getLogger(__name__)

STATS_ORDERS = ("user_id", "displayname", "media_length", "media_count")


def media_info_json(info: MediaInfo, server_name: str) -> dict[str, Any]:
    local = info.origin == server_name
    return {
        # As Synapse: local media has no origin and no separate filesystem id in its answer.
        "media_origin": None if local else info.origin,
        "user_id": info.user_id,
        "media_id": info.media_id,
        "media_type": info.media_type,
        "media_length": info.media_length,
        "upload_name": info.upload_name,
        "created_ts": info.created_ts,
        "filesystem_id": None if local else info.filesystem_id,
        "url_cache": info.url_cache,
        "last_access_ts": info.last_access_ts,
        "quarantined_by": info.quarantined_by,
        "authenticated": info.authenticated,
        "safe_from_quarantine": info.safe_from_quarantine,
        "sha256": info.sha256,
    }


class AdminMediaService:
    def __init__(
        self,
        store: AdminMediaStore,
        repository: MediaRepository,
        admin_rooms: AdminRoomService,
        *,
        server_name: str,
        audit: AuditSink | None = None,
    ) -> None:
        self.store = store
        self.repository = repository
        self.admin_rooms = admin_rooms
        self.server_name = server_name
        self.audit: AuditSink = audit or NoAudit()

    async def room_media(self, room_id: str) -> dict[str, Any]:
        local, remote = await self.admin_rooms.room_media(room_id)
        return {"local": local, "remote": remote}

    async def media_info(self, origin: str, media_id: str) -> dict[str, Any]:
        info = await self.repository.store.get_media(origin, media_id)
        if info is None:
            raise not_found("Unknown media")
        return {"media_info": media_info_json(info, self.server_name)}

    # -- quarantine ------------------------------------------------------------------------------------

    async def quarantine(self, admin: str, origin: str, media_id: str) -> None:
        await self.repository.quarantine_media(origin, media_id, admin)
        # Copies of the same content (same SHA-256) go with it, as in Synapse.
        await self.store.quarantine_same_hash(origin, media_id, admin)
        await self.audit.record("media.quarantine", actor=admin, target=f"mxc://{origin}/{media_id}")

    async def unquarantine(self, admin: str, origin: str, media_id: str) -> None:
        await self.repository.unquarantine_media(origin, media_id)
        await self.audit.record("media.unquarantine", actor=admin, target=f"mxc://{origin}/{media_id}")

    async def quarantine_room(self, admin: str, room_id: str) -> int:
        local, remote = await self.admin_rooms.room_media(room_id)
        count = 0
        for group in (local, remote):
            by_origin: dict[str, list[str]] = {}
            for uri in group:
                server, _, media_id = uri[len("mxc://") :].partition("/")
                by_origin.setdefault(server, []).append(media_id)
            for server, media_ids in by_origin.items():
                count += await self.store.quarantine_ids(server, media_ids, admin)
        await self.audit.record("media.quarantine_room", actor=admin, target=room_id, detail={"count": count})
        return count

    async def quarantine_user(self, admin: str, user_id: str) -> int:
        ids.check_user_id(user_id)
        count = await self.repository.quarantine_user_media(user_id, admin)
        await self.audit.record("media.quarantine_user", actor=admin, target=user_id, detail={"count": count})
        return count

    async def protect(self, admin: str, media_id: str, protected: bool) -> None:
        if not await self.repository.protect_media(self.server_name, media_id, protected):
            raise not_found("Unknown media")  # Synapse: 404 as well ("No row found")
        await self.audit.record(
            "media.protect" if protected else "media.unprotect",
            actor=admin,
            target=f"mxc://{self.server_name}/{media_id}",
        )

    # -- deletion --------------------------------------------------------------------------------------

    async def delete_one(self, admin: str, origin: str, media_id: str) -> dict[str, Any]:
        if origin != self.server_name:
            raise MatrixError(400, "M_UNKNOWN", "Can only delete local media")
        if await self.repository.store.get_media(origin, media_id) is None:
            raise not_found("Unknown media")
        await self.repository.delete_media(origin, media_id)
        await self.audit.record("media.delete", actor=admin, target=f"mxc://{origin}/{media_id}")
        return {"deleted_media": [media_id], "total": 1}

    async def delete_old(
        self, admin: str, *, before_ts: int, size_gt: int, keep_profiles: bool
    ) -> dict[str, Any]:
        candidates = await self.store.list_old_local_media(
            self.server_name, before_ts=before_ts, size_gt=size_gt, keep_profiles=keep_profiles
        )
        deleted = [m for m in candidates if await self.repository.delete_media(self.server_name, m)]
        await self.audit.record(
            "media.delete_old",
            actor=admin,
            detail={"before_ts": before_ts, "size_gt": size_gt, "count": len(deleted)},
        )
        return {"deleted_media": deleted, "total": len(deleted)}

    async def purge_media_cache(self, admin: str, before_ts: int) -> dict[str, Any]:
        """Cached remote media unused since `before_ts` goes (quarantined and protected items stay)."""
        deleted = await self.repository.purge_remote_cache(before_ts)
        await self.audit.record(
            "media.purge_cache", actor=admin, detail={"before_ts": before_ts, "count": deleted}
        )
        return {"deleted": deleted}

    # -- statistics ------------------------------------------------------------------------------------

    async def user_media_statistics(
        self,
        *,
        start: int,
        limit: int,
        order_by: str,
        backwards: bool,
        from_ts: int | None,
        until_ts: int | None,
        search_term: str | None,
    ) -> dict[str, Any]:
        rows = await self.store.user_media_stats(
            self.server_name, from_ts=from_ts, until_ts=until_ts, search_term=search_term
        )
        present = [r for r in rows if r[order_by] is not None]
        missing = [r for r in rows if r[order_by] is None]
        present.sort(key=lambda r: (r[order_by], r["user_id"]), reverse=backwards)
        ordered = present + missing if not backwards else missing + present
        total = len(ordered)
        response: dict[str, Any] = {"users": ordered[start : start + limit], "total": total}
        if start + limit < total:
            response["next_token"] = start + limit
        return response
