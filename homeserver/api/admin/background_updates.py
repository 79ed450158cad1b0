"""Synapse's background updates admin API (docs/usage/administration/admin_api/background_updates.md),
answered from our background jobs: `current_updates` lists the jobs in progress."""

from __future__ import annotations

from typing import Any

from homeserver.api.admin.common import ADMIN_V1
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.jobs import status as job_status

routes = Router()


@routes.get("/background_updates/status", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def background_updates_status(req: ApiRequest) -> Any:
    return await job_status.background_updates_status(req.services.jobs, req.services.clock.time_ms())
