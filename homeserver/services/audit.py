"""The audit log: one append-only record per security-relevant action.

Other code records an action with ONE call:

    await services.audit.record("admin.user.deactivate", actor=admin_id, target=user_id,
                                detail={"erase": True})

or, inside the transaction that performs the action (so the record and the change commit or roll
back together):

    async with db.transaction() as conn:
        ...  # the change
        await audit.record_txn(conn, "room.delete", actor=admin_id, target=room_id)

IP address and user agent are taken from the HTTP request being served (the route wrapper calls
`set_request_origin`), so callers never pass them; code running outside a request (background
jobs, the CLI) records them as NULL. Action names are dotted, lower case, and listed in
docs/admin.md ("Audit log"); `ACTIONS` below is the same list, and `record` refuses a name that is
not in it so a typo cannot create an unsearchable action.

Records are never modified: the store has no update method, a database trigger refuses UPDATEs,
and no API deletes them. Only the retention purge (`audit_log_retention_period`) removes old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from homeserver.core.clock import Clock
from homeserver.storage.database import Connection, Database
from homeserver.storage.stores.audit import AuditQuery, AuditRecord, AuditStore

__all__ = ["ACTIONS", "AuditLog", "AuditQuery", "AuditRecord", "record_to_json", "set_request_origin"]

logger = logging.getLogger(__name__)

# Every action name the server records (docs/admin.md lists them with their target and detail).
ACTIONS = frozenset(
    {
        # accounts and sessions (done by the user themselves)
        "register",
        "login",
        "login.failed",
        "logout",
        "logout.all",
        "device.delete",
        "password.change",
        "account.deactivate",
        # rooms
        "room.create",
        "room.kick",
        "room.ban",
        "room.unban",
        "room.membership",  # any other membership change a server admin makes for another user
        # the admin API (actor is the admin)
        "admin.user.create",
        "admin.user.modify",
        "admin.user.deactivate",
        "admin.user.reset_password",
        "admin.user.set_admin",
        "admin.user.login_as",
        "admin.user.shadow_ban",
        "admin.user.unshadow_ban",
        "admin.user.suspend",
        "admin.user.unsuspend",
        "admin.user.ratelimit.set",
        "admin.user.ratelimit.delete",
        "admin.user.media.delete",
        "admin.device.create",
        "admin.device.update",
        "admin.device.delete",
        "admin.event_report.delete",
        "admin.registration_token.create",
        "admin.registration_token.update",
        "admin.registration_token.delete",
        "admin.audit_log.export",
        # the admin API for rooms, media and server notices (docs/admin-rooms-media.md)
        "room.block",
        "room.unblock",
        "room.make_admin",
        "room.join_user",
        "room.delete_extremities",
        "room.delete",
        "room.purge_history",
        "media.protect",
        "media.unprotect",
        "media.delete",
        "media.delete_old",
        "media.purge_cache",
        "media.quarantine_room",
        "media.quarantine_user",
        "server_notice.send",
        "server_notice.broadcast",
        # reserved for admin features that call `record` when they are built
        "admin.room.read",
        "admin.room.delete",
        "admin.room.membership",
        "media.quarantine",
        "media.unquarantine",
        "media.quarantined_download",
        "admin.export",
        "retention.purge",
        "user.erase",
        "audit_log.purge",
    }
)


@dataclass(frozen=True, slots=True)
class RequestOrigin:
    ip: str | None
    user_agent: str | None


_NO_ORIGIN = RequestOrigin(None, None)
_origin: contextvars.ContextVar[RequestOrigin | None] = contextvars.ContextVar(
    "audit_request_origin", default=None
)


def set_request_origin(ip: str | None, user_agent: str | None) -> None:
    """Called by the HTTP layer for each request (each request runs in its own task context)."""
    _origin.set(RequestOrigin(ip or None, user_agent or None))


def current_origin() -> RequestOrigin:
    return _origin.get() or _NO_ORIGIN


class AuditLog:
    def __init__(
        self,
        db: Database,
        store: AuditStore,
        clock: Clock,
        *,
        retention_ms: int | None = None,
        log_admin_room_reads: bool = False,
    ) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.retention_ms = retention_ms
        # Read by the admin rooms API: when True, admins reading room details/state/messages/members
        # are recorded as "admin.room.read".
        self.log_admin_room_reads = log_admin_room_reads
        self._purger: asyncio.Task[None] | None = None

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one record in its own transaction."""
        async with self.db.transaction() as conn:
            await self.record_txn(conn, action, actor=actor, target=target, detail=detail)

    async def record_txn(
        self,
        conn: Connection,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one record inside the caller's transaction."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}: add it to ACTIONS and docs/admin.md")
        origin = _origin.get() or _NO_ORIGIN
        await self.store.insert_txn(
            conn,
            ts=self.clock.time_ms(),
            actor=actor,
            action=action,
            target=target,
            ip=origin.ip,
            user_agent=origin.user_agent,
            detail=detail or {},
        )

    async def query(
        self, query: AuditQuery, *, after_id: int | None, limit: int, newest_first: bool
    ) -> list[AuditRecord]:
        return await self.store.list_records(query, after_id=after_id, limit=limit, newest_first=newest_first)

    async def export(self, query: AuditQuery, *, batch: int = 1000) -> AsyncIterator[AuditRecord]:
        """Every matching record, oldest first, fetched in batches."""
        after: int | None = None
        while True:
            page = await self.store.list_records(query, after_id=after, limit=batch, newest_first=False)
            for record in page:
                yield record
            if len(page) < batch:
                return
            after = page[-1].id

    # -- retention ---------------------------------------------------------------------------------

    async def purge_expired(self) -> int:
        """Delete records older than the retention period; the purge itself is recorded."""
        if self.retention_ms is None:
            return 0
        cutoff = self.clock.time_ms() - self.retention_ms
        deleted = await self.store.delete_before(cutoff)
        if deleted:
            await self.record("audit_log.purge", actor=None, detail={"before_ts": cutoff, "deleted": deleted})
            logger.info("audit log retention: %d record(s) older than %d deleted", deleted, cutoff)
        return deleted

    def start_retention(self, interval_s: float = 3600.0) -> None:
        if self.retention_ms is None or self._purger is not None:
            return

        async def loop() -> None:
            while True:
                try:
                    await self.purge_expired()
                except Exception:
                    logger.exception("audit log retention purge failed")
                await asyncio.sleep(interval_s)

        self._purger = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
            self._purger = None


def record_to_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "ts": record.ts,
        "actor": record.actor,
        "action": record.action,
        "target": record.target,
        "ip": record.ip,
        "user_agent": record.user_agent,
        "detail": record.detail,
    }
