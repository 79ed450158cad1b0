"""Login, token refresh and logout (login.yaml, refresh.yaml, logout.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError, missing_token, unknown_token
from homeserver.http.auth import extract_access_token
from homeserver.http.params import get_str
from homeserver.http.routing import CLIENT_V1, CLIENT_V3, ApiRequest, Auth, Router
from homeserver.services.accounts import LoginResult

from .registration import _login_body
from .uia_stages import require_password_uia

routes = Router()


@routes.get("/login", auth=Auth.NONE)
async def getLoginFlows(req: ApiRequest) -> Any:
    # Synapse's order: SSO, the login token it ends with, the password, appservices.
    flows: list[dict[str, Any]] = []
    sso = req.services.sso
    get_token = req.services.config.login_via_existing_session.enabled
    if sso.enabled:
        flows.append({"type": "m.login.sso", "identity_providers": sso.identity_providers()})
    if sso.enabled or get_token:
        # `get_login_token`: POST /login/get_token is served (spec v1.7).
        flows.append({"type": "m.login.token", **({"get_login_token": True} if get_token else {})})
    flows.append({"type": "m.login.password"})
    flows.append({"type": "m.login.application_service"})
    return {"flows": flows}


@routes.post("/login", auth=Auth.NONE, ratelimit="login")
async def login(req: ApiRequest) -> Any:
    body = await req.json()
    login_type = get_str(body, "type", required=True)
    if login_type == "m.login.application_service":
        result = await _appservice_login(req, body)
    elif login_type == "m.login.token":
        result = await req.services.login_tokens.login(body)
    elif login_type != "m.login.password":
        raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type}")
    else:
        result = await req.services.accounts.login_with_password(body)
    return _login_body(result, req.services.config.server_name)


async def _appservice_login(req: ApiRequest, body: dict[str, Any]) -> LoginResult:
    """A device and access token for a user in the appservice's namespaces (its as_token is
    the credential), e.g. for a bridge that needs per-user devices for encryption."""
    token = extract_access_token(req.raw)
    if token is None:
        raise missing_token()
    service = req.services.appservices.get_by_token(token)
    if service is None:
        raise unknown_token()
    return await req.services.accounts.login_appservice_user(service, body)


@routes.post("/login/get_token", prefixes=(*CLIENT_V1, "/_matrix/client/unstable/org.matrix.msc3882"))
async def generateLoginToken(req: ApiRequest) -> Any:
    """A login token for signing in another device (MSC3882), when the server allows it."""
    config = req.services.config.login_via_existing_session
    if not config.enabled:
        raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    body = await req.json(allow_empty=True)
    if config.require_ui_auth:
        await require_password_uia(req, body)
    token = await req.services.login_tokens.issue(req.user.user_id, lifetime_ms=config.token_timeout)
    return {"login_token": token, "expires_in_ms": config.token_timeout}


@routes.post("/refresh", auth=Auth.NONE, prefixes=CLIENT_V3)
async def refresh(req: ApiRequest) -> Any:
    body = await req.json()
    token = get_str(body, "refresh_token", required=True)
    result = await req.services.accounts.refresh(token)
    response: dict[str, Any] = {"access_token": result.access_token, "refresh_token": result.refresh_token}
    if result.expires_in_ms is not None:
        response["expires_in_ms"] = result.expires_in_ms
    return response


@routes.post("/logout")
async def logout(req: ApiRequest) -> Any:
    user = req.user
    await req.services.accounts.logout(user.user_id, user.device_id, user.token_hash)
    return {}


@routes.post("/logout/all")
async def logout_all(req: ApiRequest) -> Any:
    await req.services.accounts.logout_all(req.user.user_id)
    return {}
