"""Synapse admin API "Get/Change whether a user is a server administrator":
`GET/PUT /_synapse/admin/v1/users/{userId}/admin`."""

from __future__ import annotations

from typing import Any

from homeserver.http.params import get_bool
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()
PREFIX = ("/_synapse/admin/v1",)


@routes.get("/users/{userId}/admin", auth=Auth.ADMIN, prefixes=PREFIX)
async def get_user_admin(req: ApiRequest) -> Any:
    return {"admin": await req.services.server_admins.is_admin(req.path["userId"])}


@routes.put("/users/{userId}/admin", auth=Auth.ADMIN, prefixes=PREFIX)
async def set_user_admin(req: ApiRequest) -> Any:
    body = await req.json()
    admin = get_bool(body, "admin", required=True)
    await req.services.server_admins.set_admin(req.user, req.path["userId"], admin)
    await req.services.admin_users.record_set_admin(req.user, req.path["userId"], bool(admin))
    return {}
