"""Where admin actions on rooms, media and notices are recorded for the audit log.

The audit log itself is another module's (services/audit.py, `AuditLog.record`); this protocol has
the same call shape so the composition root can hand that service in. Until it does, `NoAudit`
drops the records. Call sites pass an action name, the acting admin and the target.
"""

from __future__ import annotations

from typing import Any, Protocol


class AuditSink(Protocol):
    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None: ...


class NoAudit:
    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        return None
