"""Send-to-device messaging (to_device.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Router

routes = Router()


@routes.put("/sendToDevice/{eventType}/{txnId}")
async def sendToDevice(req: ApiRequest) -> Any:
    body = await req.json()
    if "messages" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter 'messages'")
    await req.services.to_device.send(
        req.user.user_id, req.user.device_id, req.path["eventType"], req.path["txnId"], body["messages"]
    )
    return {}
