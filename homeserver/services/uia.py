"""User-interactive authentication (client-server API, "User-Interactive Authentication API").

A request without `auth` gets 401 with the flows and a new session. Each request carrying `auth`
completes one stage of that session; once every stage of some flow is done the caller proceeds.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.storage.stores.misc import UiaSession, UiaStore

SESSION_LIFETIME_MS = 24 * 3600 * 1000
# Stages completed only through their fallback page (`/auth/<type>/fallback/web`): the client
# then resubmits with just the session (or names the stage again).
FALLBACK_STAGES = frozenset({"m.login.sso"})

# A stage checker gets the `auth` dict (and the session's user) and returns what it proved (e.g. the
# user id for a password stage); it raises MatrixError(401/403) on failure.
StageChecker = Callable[[dict[str, Any], str | None], Awaitable[Any]]


class UiaRequired(MatrixError):
    """The 401 answer of the UIA API: flows, params, session, completed stages, maybe an error."""

    def __init__(
        self,
        flows: list[list[str]],
        session: str,
        completed: list[str],
        params: dict[str, Any],
        error: MatrixError | None = None,
    ) -> None:
        super().__init__(401, error.errcode if error else "M_FORBIDDEN", error.error if error else "")
        self.body: dict[str, Any] = {
            "flows": [{"stages": f} for f in flows],
            "params": params,
            "session": session,
        }
        if completed:
            self.body["completed"] = completed
        if error is not None:
            self.body["errcode"] = error.errcode
            self.body["error"] = error.error

    def to_body(self) -> dict[str, Any]:
        return self.body


@dataclass(frozen=True, slots=True)
class UiaResult:
    session_id: str
    completed: dict[str, Any]
    clientdict: dict[str, Any]


class UiaService:
    def __init__(self, store: UiaStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def authenticate(
        self,
        body: dict[str, Any],
        *,
        uri: str,
        method: str,
        flows: list[list[str]],
        checkers: dict[str, StageChecker],
        user_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> UiaResult:
        params = params or {}
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "'auth' must be an object")
        # Wrong types are a malformed request (400 M_BAD_JSON, as Synapse's request models answer),
        # not a failed stage: the session is neither created nor advanced.
        if auth and "type" in auth and not isinstance(auth["type"], str):
            raise MatrixError(400, "M_BAD_JSON", "'auth.type' must be a string")
        if auth and auth.get("session") is not None and not isinstance(auth["session"], str):
            raise MatrixError(400, "M_BAD_JSON", "'auth.session' must be a string")
        now = self.clock.time_ms()
        session_id = auth.get("session") if auth else None
        session = await self.store.get_session(session_id) if isinstance(session_id, str) else None
        if session_id is not None and (session is None or session.created_ts + SESSION_LIFETIME_MS < now):
            raise MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session")
        if session is not None and (session.uri != uri or session.method != method):
            raise MatrixError(
                403, "M_FORBIDDEN", "Requested operation has changed during the UI authentication session."
            )
        if session is None:
            session_id = secrets.token_urlsafe(18)
            clientdict = {k: v for k, v in body.items() if k != "auth"}
            await self.store.insert_session(session_id, now, uri, method, clientdict, user_id)
            completed: dict[str, Any] = {}
            clientdict_saved = clientdict
        else:
            session_id = session.session_id
            completed = dict(session.completed)
            clientdict_saved = session.clientdict
        assert isinstance(session_id, str)

        if (
            auth is not None
            and "type" in auth
            and not (auth["type"] in FALLBACK_STAGES and auth["type"] in completed)
        ):
            # A fallback-only stage (m.login.sso) is proven by its page, not by the auth dict:
            # naming it again once done just re-checks the flows.
            stage = auth["type"]
            allowed = {s for flow in flows for s in flow}
            checker = checkers.get(stage)
            if checker is None or stage not in allowed:
                raise UiaRequired(
                    flows,
                    session_id,
                    list(completed),
                    params,
                    MatrixError(400, "M_UNRECOGNIZED", f"Unrecognised login type {stage[:100]!r}"),
                )
            try:
                completed[stage] = await checker(auth, user_id)
            except MatrixError as err:
                if err.status == 429:
                    raise
                raise UiaRequired(flows, session_id, list(completed), params, err) from err
            await self.store.set_completed(session_id, completed)

        for flow in flows:
            if all(stage in completed for stage in flow):
                return UiaResult(session_id, completed, clientdict_saved)
        raise UiaRequired(flows, session_id, list(completed), params)

    async def session(self, session_id: str) -> UiaSession | None:
        """A live session (for a fallback page), or None when unknown or expired."""
        session = await self.store.get_session(session_id)
        if session is None or session.created_ts + SESSION_LIFETIME_MS < self.clock.time_ms():
            return None
        return session

    async def complete_stage(self, session_id: str, stage: str, result: Any) -> None:
        """Record a stage proven out of band (the m.login.sso fallback page's callback)."""
        await self.store.add_completed(session_id, stage, result)

    async def finish(self, session_id: str) -> None:
        await self.store.delete_session(session_id)
