"""Synapse's shared-secret registration: GET a nonce, POST with an HMAC-SHA1 over the fields.

Documented at Synapse's admin API "Shared-Secret Registration"; the black-box tests and the
benchmark create users with it.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.params import get_bool, get_str
from homeserver.http.routing import ApiRequest, Auth, Router

from ..client.registration import _login_body

routes = Router()
PREFIX = ("/_synapse/admin/v1",)


@routes.get("/register", auth=Auth.NONE, prefixes=PREFIX)
async def get_nonce(req: ApiRequest) -> Any:
    return {"nonce": await req.services.shared_secret.new_nonce()}


@routes.post("/register", auth=Auth.NONE, prefixes=PREFIX)
async def register_with_shared_secret(req: ApiRequest) -> Any:
    req.services.shared_secret.check_enabled()  # disabled: 400 before any body error, as before
    body = await req.json()
    login = await req.services.shared_secret.register(
        nonce=get_str(body, "nonce", required=True),
        username=get_str(body, "username", required=True),
        password=get_str(body, "password", required=True),
        mac=get_str(body, "mac", required=True),
        admin=bool(get_bool(body, "admin", default=False)),
        user_type=get_str(body, "user_type"),
        displayname=get_str(body, "displayname"),
    )
    return _login_body(login, req.services.config.server_name)
