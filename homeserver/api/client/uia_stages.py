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


async def user_flows(req: ApiRequest, user_id: str) -> list[list[str]]:
    """The UIA flows a signed-in user can complete, as Synapse offers them: the password when the
    account has one (or a password provider such as LDAP can check it), and m.login.sso when the
    user has signed in with one of the configured identity providers."""
    flows: list[list[str]] = []
    accounts = req.services.accounts
    user = await accounts.users.get_user(user_id)
    if (user is not None and user.password_hash) or accounts.external_password_check is not None:
        flows.append(["m.login.password"])
    if await req.services.sso.providers_for_user(user_id):
        flows.append(["m.login.sso"])
    # An account with neither still gets the password flow: it fails like a wrong password
    # rather than leaving the client with no way forward to report.
    return flows or PASSWORD_FLOWS


async def require_password_uia(req: ApiRequest, body: dict[str, Any]) -> None:
    """Run the requester's UIA (password and/or SSO, see `user_flows`); raises the 401 challenge
    until it is done, and 403 when the stage proved another user."""
    user_id = req.user.user_id
    result = await req.services.uia.authenticate(
        body,
        uri=req.raw.path,
        method=req.raw.method,
        flows=await user_flows(req, user_id),
        checkers=password_checkers(req),
        user_id=user_id,
    )
    # An SSO stage records whom the provider vouched for (""/another user when it was someone
    # else, as Synapse), so the result must still be checked against the requester.
    if any(value != user_id for value in result.completed.values()):
        raise MatrixError(403, "M_FORBIDDEN", "Invalid auth")
    await req.services.uia.finish(result.session_id)


require_user_uia = require_password_uia
