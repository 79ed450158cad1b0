"""Compliance admin API (our extension): a user's data export before erasure
(docs/retention-erasure.md)."""

from __future__ import annotations

from typing import Any

from homeserver.api.admin.common import ADMIN_V1
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.get("/users/{userId}/export", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def export_user_data(req: ApiRequest) -> Any:
    return await req.services.erasure.export_user(req.path["userId"], actor=req.user.user_id)
