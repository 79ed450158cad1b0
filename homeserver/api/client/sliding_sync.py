"""Simplified sliding sync: POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.metrics import set_request_tag
from homeserver.http.params import query_int
from homeserver.http.routing import CLIENT_UNSTABLE, ApiRequest, Router
from homeserver.sync.sliding.request import SlidingSyncRequest

routes = Router()

MAX_TIMEOUT_MS = 5 * 60 * 1000


@routes.post("/org.matrix.simplified_msc3575/sync", prefixes=CLIENT_UNSTABLE)
async def slidingSync(req: ApiRequest) -> Any:
    body = await req.json()
    # Element X sends `pos` and `timeout` as query parameters (as Synapse reads them); the MSC
    # text has them in the body too: the query wins.
    pos = req.query.get("pos")
    if pos is None and isinstance(body, dict) and body.get("pos") is not None:
        pos = body["pos"]
        if not isinstance(pos, str):
            raise MatrixError(400, "M_UNKNOWN_POS", "Malformed position; start a new connection without pos")
    if "timeout" in req.query:
        timeout = query_int(req.query, "timeout", 0, minimum=0, maximum=MAX_TIMEOUT_MS) or 0
    else:
        raw = body.get("timeout", 0) if isinstance(body, dict) else 0
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "timeout must be a non-negative integer")
        timeout = min(raw, MAX_TIMEOUT_MS)
    set_request_tag("sliding_sync_initial" if pos is None else "sliding_sync_incremental")
    request = SlidingSyncRequest.parse(req.user.user_id, req.user.device_id, body, pos or None, timeout)
    return await req.services.sliding_sync.sync(request)
