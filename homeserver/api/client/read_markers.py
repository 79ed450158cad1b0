"""Read markers (read_markers.yaml)."""

from __future__ import annotations

import logging
from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Router
from homeserver.services.receipts import RECEIPT_TYPES

routes = Router()
logger = logging.getLogger(__name__)


@routes.post("/rooms/{roomId}/read_markers")
async def setReadMarker(req: ApiRequest) -> Any:
    room_id = req.path["roomId"]
    if not ids.is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room id")
    body = await req.json()
    markers: dict[str, str] = {}
    for key, value in body.items():
        if key not in RECEIPT_TYPES:
            # Unknown receipt types are not an error (extensibility), as Synapse does.
            logger.info("ignoring unrecognised read marker type %s", key)
            continue
        if value is None:
            continue
        if not isinstance(value, str) or not value.startswith("$"):
            raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' must be an event id")
        markers[key] = value
    await req.services.receipts.set_read_markers(req.user.user_id, req.user.device_id, room_id, markers)
    return {}
