"""Synapse's shared-secret registration: GET a nonce, POST with an HMAC-SHA1 over the fields.

Documented at Synapse's admin API "Shared-Secret Registration"; the black-box tests and the
benchmark create users with it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.params import get_bool, get_str
from homeserver.http.routing import ApiRequest, Auth, Router

from ..client.registration import _login_body

routes = Router()
PREFIX = ("/_synapse/admin/v1",)
NONCE_LIFETIME_MS = 60_000


def _secret(req: ApiRequest) -> str:
    secret: str | None = req.services.config.registration_shared_secret
    if not secret:
        raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
    return secret


@routes.get("/register", auth=Auth.NONE, prefixes=PREFIX)
async def get_nonce(req: ApiRequest) -> Any:
    _secret(req)
    nonce = secrets.token_hex(32)
    await req.services.nonces.insert_nonce(nonce, req.services.clock.time_ms())
    return {"nonce": nonce}


@routes.post("/register", auth=Auth.NONE, prefixes=PREFIX)
async def register_with_shared_secret(req: ApiRequest) -> Any:
    secret = _secret(req)
    body = await req.json()
    nonce = get_str(body, "nonce", required=True)
    username = get_str(body, "username", required=True)
    password = get_str(body, "password", required=True)
    mac = get_str(body, "mac", required=True)
    admin = bool(get_bool(body, "admin", default=False))
    user_type = get_str(body, "user_type")
    displayname = get_str(body, "displayname")

    # As Synapse: the nonce is spent first, so a wrong MAC cannot be retried with it.
    now = req.services.clock.time_ms()
    if not await req.services.nonces.take_nonce(nonce, now - NONCE_LIFETIME_MS):
        raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")
    want = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    want.update(nonce.encode() + b"\x00" + username.encode() + b"\x00" + password.encode())
    want.update(b"\x00" + (b"admin" if admin else b"notadmin"))
    if user_type:
        want.update(b"\x00" + user_type.encode())
    if not hmac.compare_digest(want.hexdigest(), mac):
        raise MatrixError(403, "M_FORBIDDEN", "HMAC incorrect")

    _, login = await req.services.accounts.register(
        username.lower(), password, admin=admin, displayname=displayname, user_type=user_type
    )
    assert login is not None
    return _login_body(login, req.services.config.server_name)
