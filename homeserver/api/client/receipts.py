"""Receipts (receipts.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Router
from homeserver.services.receipts import check_thread_id

routes = Router()


@routes.post("/rooms/{roomId}/receipt/{receiptType}/{eventId}")
async def postReceipt(req: ApiRequest) -> Any:
    room_id = req.path["roomId"]
    event_id = req.path["eventId"]
    if not ids.is_valid_room_id(room_id) or not event_id.startswith("$"):
        raise MatrixError(400, "M_INVALID_PARAM", "A valid room ID and event ID must be specified")
    body = await req.json()
    await req.services.receipts.post_receipt(
        req.user.user_id,
        req.user.device_id,
        room_id,
        req.path["receiptType"],
        event_id,
        check_thread_id(body),
    )
    return {}
