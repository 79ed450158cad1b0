"""whoami, password change and deactivation (whoami.yaml, password_management.yaml,
account_deactivation.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.http.params import get_bool, get_str
from homeserver.http.routing import ApiRequest, Router

from .uia_stages import require_password_uia

routes = Router()


@routes.get("/account/whoami")
async def getTokenOwner(req: ApiRequest) -> Any:
    body: dict[str, Any] = {"user_id": req.user.user_id, "is_guest": req.user.is_guest}
    if req.user.device_id is not None:
        body["device_id"] = req.user.device_id
    return body


@routes.post("/account/password")
async def changePassword(req: ApiRequest) -> Any:
    body = await req.json()
    new_password = get_str(body, "new_password", required=True)
    logout_devices = get_bool(body, "logout_devices", default=True)
    await require_password_uia(req, body)
    await req.services.accounts.change_password(
        req.user.user_id, new_password, keep_device_id=req.user.device_id, logout_devices=logout_devices
    )
    return {}


@routes.post("/account/deactivate")
async def deactivateAccount(req: ApiRequest) -> Any:
    body = await req.json()
    erase = get_bool(body, "erase", default=False)
    get_str(body, "id_server")
    await require_password_uia(req, body)
    await req.services.accounts.deactivate(req.user.user_id, erase=erase)
    return {"id_server_unbind_result": "no-support"}
