"""GDPR erasure and the user data export.

`erase_user` (called by `POST /account/deactivate` with `erase: true`, and by the admin deactivate)
marks the user erased, deletes their profile fields, account data, push rules, pushers, E2E keys and
key backups, pending to-device messages, filters and user directory entry, and their uploaded
media. Their events stay in rooms (other servers and the DAG need them) but are served pruned, as
Synapse does (synapse/visibility.py): a user who was joined to the room when an event of an erased
sender was sent still sees it as it was; everyone else (new members, users reading shared or
world-readable history) sees only its redacted form. Search never returns a pruned event.

`export_user` returns what the server holds about a user (profile, account data, memberships, the
events they sent, media metadata, devices, pushers) for an archive before erasure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.services.audit_sink import AuditSink
from homeserver.services.retention import MediaDeleter
from homeserver.storage.database import Database
from homeserver.storage.stores.compliance import ComplianceStore
from homeserver.storage.stores.users import UserStore

logger = logging.getLogger(__name__)

UserHook = Callable[[str], Awaitable[None]]
# Other processes learn about erasures when they re-read the (small) table this often.
REFRESH_MS = 60_000


class ErasureService:
    def __init__(
        self,
        db: Database,
        store: ComplianceStore,
        users: UserStore,
        media: MediaDeleter,
        clock: Clock,
        *,
        audit: AuditSink,
    ) -> None:
        self.db = db
        self.store = store
        self.users = users
        self.media = media
        self.clock = clock
        self.audit = audit
        self._erased: set[str] = set()
        self._loaded_at: int | None = None
        # Caches of other services holding erased data (push rules, directory) drop the user here.
        self.erased_hooks: list[UserHook] = []

    async def erased_among(self, senders: Iterable[str]) -> set[str]:
        now = self.clock.time_ms()
        if self._loaded_at is None or now - self._loaded_at >= REFRESH_MS:
            self._erased = await self.store.list_erased()
            self._loaded_at = now
        if not self._erased:
            return set()
        return {s for s in senders if s in self._erased}

    async def erase_user(self, user_id: str, *, actor: str | None = None) -> dict[str, Any]:
        """Erase a (deactivated or being deactivated) local user's data; idempotent."""
        if await self.users.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", "User not found")
        async with self.db.transaction() as conn:
            await self.store.erase_user_rows_txn(conn, user_id)
        self._erased.add(user_id)
        media_deleted = await self.media.delete_user_media(user_id)
        for hook in self.erased_hooks:
            try:
                await hook(user_id)
            except Exception:
                logger.exception("erasure hook failed for %s", user_id)
        detail = {"media_deleted": media_deleted}
        await self.audit.record("user.erase", actor=actor or user_id, target=user_id, detail=detail)
        logger.info("user %s erased (%d media deleted)", user_id, media_deleted)
        return detail

    async def export_user(self, user_id: str, *, actor: str | None) -> dict[str, Any]:
        if await self.users.get_user(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", "User not found")
        data = await self.store.export_user(user_id)
        await self.audit.record("admin.export", actor=actor, target=user_id, detail=None)
        return data
