"""The admin side of content reports and registration tokens (Synapse's "Event Reports" and
"Registration Tokens" admin APIs). Deletions and token changes are audited."""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, not_found
from homeserver.http.requester import Requester
from homeserver.services.audit import AuditLog
from homeserver.state.current import CurrentStateCache
from homeserver.storage.database import Database
from homeserver.storage.stores.events import EventStore
from homeserver.storage.stores.misc import RegistrationToken, RegistrationTokenStore
from homeserver.storage.stores.reports import EVENT, Report, ReportQuery, ReportStore

TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_ALPHABET = string.ascii_letters + string.digits + "._~-"


def token_json(t: RegistrationToken) -> dict[str, Any]:
    return {
        "token": t.token,
        "uses_allowed": t.uses_allowed,
        "pending": t.pending,
        "completed": t.completed,
        "expiry_time": t.expiry_time,
    }


def _invalid(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


def _optional_count(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _invalid(f"{key} must be a non-negative integer or null")
    return value


class AdminReportService:
    def __init__(
        self,
        db: Database,
        reports: ReportStore,
        events: EventStore,
        state: CurrentStateCache,
        tokens: RegistrationTokenStore,
        audit: AuditLog,
        clock: Clock,
    ) -> None:
        self.tokens = tokens
        self.db = db
        self.reports = reports
        self.events = events
        self.state = state
        self.audit = audit
        self.clock = clock

    # -- event reports -------------------------------------------------------------------------

    async def _report_json(self, report: Report) -> dict[str, Any]:
        snapshot = await self.state.get(report.room_id) if report.room_id else None
        name = alias = None
        if snapshot is not None:
            name = snapshot.content_of("m.room.name").get("name")
            alias = snapshot.content_of("m.room.canonical_alias").get("alias")
        return {
            "id": report.id,
            "received_ts": report.received_ts,
            "room_id": report.room_id,
            "name": name if isinstance(name, str) else None,
            "event_id": report.event_id,
            "user_id": report.reporter,
            "reason": report.reason,
            "score": report.score,
            "sender": report.target_user_id,
            "canonical_alias": alias if isinstance(alias, str) else None,
        }

    async def list_event_reports(
        self,
        *,
        offset: int,
        limit: int,
        newest_first: bool,
        room_id: str | None,
        user_id: str | None,
        sender: str | None,
    ) -> dict[str, Any]:
        query = ReportQuery(kind=EVENT, room_id=room_id, reporter=user_id, target_user_id=sender)
        page, total = await self.reports.list_reports(
            query, offset=offset, limit=limit, newest_first=newest_first
        )
        body: dict[str, Any] = {
            "event_reports": [await self._report_json(r) for r in page],
            "total": total,
        }
        if page and offset + len(page) < total:
            body["next_token"] = offset + len(page)
        return body

    async def _event_report(self, report_id: int) -> Report:
        report = await self.reports.get_report(report_id)
        if report is None or report.kind != EVENT:
            raise not_found("Event report not found")
        return report

    async def get_event_report(self, report_id: int) -> dict[str, Any]:
        report = await self._event_report(report_id)
        body = await self._report_json(report)
        stored = await self.events.get_event(report.event_id) if report.event_id else None
        body["event_json"] = dict(stored.event.pdu) if stored is not None else None
        return body

    async def delete_event_report(self, admin: Requester, report_id: int) -> None:
        report = await self._event_report(report_id)
        await self.reports.delete_report(report_id)
        await self.audit.record(
            "admin.event_report.delete",
            actor=admin.user_id,
            target=str(report_id),
            detail={"room_id": report.room_id, "event_id": report.event_id},
        )

    # -- registration tokens -------------------------------------------------------------------

    async def get_token(self, token: str) -> dict[str, Any]:
        found = await self.tokens.get_token(token)
        if found is None:
            raise not_found(f"No such registration token: {token}")
        return token_json(found)

    async def list_tokens(self, valid: bool | None) -> list[dict[str, Any]]:
        now = self.clock.time_ms()
        out = []
        for t in await self.tokens.list_tokens():
            is_valid = (t.uses_allowed is None or t.pending + t.completed < t.uses_allowed) and (
                t.expiry_time is None or t.expiry_time > now
            )
            if valid is None or valid == is_valid:
                out.append(token_json(t))
        return out

    async def create_token(self, admin: Requester, body: dict[str, Any]) -> dict[str, Any]:
        uses_allowed = _optional_count(body, "uses_allowed")
        expiry_time = body.get("expiry_time")
        if expiry_time is not None:
            if type(expiry_time) is not int:
                raise _invalid("expiry_time must be an integer or null")
            if expiry_time < self.clock.time_ms():
                raise _invalid("expiry_time must not be in the past")
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str) or not TOKEN_CHARS.match(token):
                raise _invalid("token must consist only of characters matched by the regex [A-Za-z0-9-_]")
            if not await self.tokens.insert_token(token, uses_allowed, expiry_time):
                raise _invalid(f"Token already exists: {token}")
        else:
            length = body.get("length", 16)
            if type(length) is not int or not 0 < length <= 64:
                raise _invalid("length must be an integer > 0 and <= 64")
            while True:
                token = "".join(secrets.choice(_ALPHABET) for _ in range(length))
                if await self.tokens.insert_token(token, uses_allowed, expiry_time):
                    break
        await self.audit.record(
            "admin.registration_token.create",
            actor=admin.user_id,
            target=token,
            detail={"uses_allowed": uses_allowed, "expiry_time": expiry_time},
        )
        created = await self.tokens.get_token(token)
        assert created is not None
        return token_json(created)

    async def update_token(self, admin: Requester, token: str, body: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if "uses_allowed" in body:
            changes["uses_allowed"] = _optional_count(body, "uses_allowed")
        if "expiry_time" in body:
            expiry_time = body["expiry_time"]
            if expiry_time is not None:
                if type(expiry_time) is not int:
                    raise _invalid("expiry_time must be an integer or null")
                if expiry_time < self.clock.time_ms():
                    raise _invalid("expiry_time must not be in the past")
            changes["expiry_time"] = expiry_time
        if await self.tokens.get_token(token) is None:
            raise not_found(f"No such registration token: {token}")
        async with self.db.transaction() as conn:
            await self.tokens.update_token_txn(conn, token, changes)
            await self.audit.record_txn(
                conn, "admin.registration_token.update", actor=admin.user_id, target=token, detail=changes
            )
        updated = await self.tokens.get_token(token)
        assert updated is not None
        return token_json(updated)

    async def delete_token(self, admin: Requester, token: str) -> None:
        if await self.tokens.get_token(token) is None:
            raise not_found(f"No such registration token: {token}")
        await self.tokens.delete_token(token)
        await self.audit.record("admin.registration_token.delete", actor=admin.user_id, target=token)
