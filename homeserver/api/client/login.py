"""Login, token refresh and logout (login.yaml, refresh.yaml, logout.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.params import get_str
from homeserver.http.routing import CLIENT_V3, ApiRequest, Auth, Router

from .registration import _login_body

routes = Router()


@routes.get("/login", auth=Auth.NONE)
async def getLoginFlows(req: ApiRequest) -> Any:
    return {"flows": [{"type": "m.login.password"}]}


@routes.post("/login", auth=Auth.NONE, ratelimit="login")
async def login(req: ApiRequest) -> Any:
    body = await req.json()
    login_type = get_str(body, "type", required=True)
    if login_type != "m.login.password":
        raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type}")
    result = await req.services.accounts.login_with_password(body)
    return _login_body(result, req.services.config.server_name)


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
