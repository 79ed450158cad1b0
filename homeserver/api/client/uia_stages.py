"""The UIA stage checkers shared by the account endpoints."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest
from homeserver.services.uia import StageChecker

PASSWORD_FLOWS = [["m.login.password"]]


def password_checkers(req: ApiRequest) -> dict[str, StageChecker]:
    accounts = req.services.accounts

    async def check_password(auth: dict[str, Any], session_user: str | None) -> str:
        claimed = accounts.resolve_user_identifier(auth)
        if session_user is not None and claimed != session_user:
            raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")
        user = await accounts.check_password(claimed, auth.get("password"))
        return user.user_id

    return {"m.login.password": check_password}


async def require_password_uia(req: ApiRequest, body: dict[str, Any]) -> None:
    """Run the password UIA for the requester; raises the 401 challenge until it is done."""
    result = await req.services.uia.authenticate(
        body,
        uri=req.raw.path,
        method=req.raw.method,
        flows=PASSWORD_FLOWS,
        checkers=password_checkers(req),
        user_id=req.user.user_id,
    )
    await req.services.uia.finish(result.session_id)
