"""Server notices (Synapse's docs/admin_api/server_notices.md) and our broadcast extension."""

from __future__ import annotations

from typing import Any

from homeserver.api.admin.common import ADMIN_V1
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.post("/send_server_notice", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def send_server_notice(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    event_id = await req.services.server_notices.send_from_admin(req.user.user_id, body, None)
    return {"event_id": event_id}


@routes.put("/send_server_notice/{txnId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def send_server_notice_txn(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    event_id = await req.services.server_notices.send_from_admin(req.user.user_id, body, req.path["txnId"])
    return {"event_id": event_id}


@routes.post("/broadcast_server_notice", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def broadcast_server_notice(req: ApiRequest) -> Any:
    """Our extension: one notice to every local user, or to the local members of a room (a space:
    and of its child rooms), sent by a background job. See docs/admin-rooms-media.md."""
    body = await req.json(allow_empty=False)
    return await req.services.server_notices.start_broadcast(req.user.user_id, body)


@routes.get("/broadcast_server_notice/{jobId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def broadcast_server_notice_status(req: ApiRequest) -> Any:
    return await req.services.server_notices.broadcast_status(req.path["jobId"])
