"""Main's internal replication API: what a worker asks the writer (docs/scale-out.md).

Served under the `replication` listener resource, authenticated with the shared
`worker_replication_secret` (Auth.REPLICATION); 404 when no secret is configured.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.config.workers import ROLES
from homeserver.core.errors import MatrixError
from homeserver.http.params import get_bool
from homeserver.http.routing import ApiRequest, Auth, Router

logger = logging.getLogger(__name__)

PREFIXES = ("/_homeserver/replication/v1",)
routes = Router()


def _require_main(req: ApiRequest) -> None:
    if req.services.role != "main":
        raise MatrixError(404, "M_UNRECOGNIZED", "Only the main process serves the replication API")


@routes.get("/handshake", auth=Auth.REPLICATION, prefixes=PREFIXES)
async def replicationHandshake(req: ApiRequest) -> Any:
    _require_main(req)
    role = req.query.get("role", "")
    if role not in ROLES or role == "main":
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown worker role {role!r}")
    logger.info("worker %r (%s) checked in", req.query.get("name", role), role)
    return {"server_name": req.services.config.server_name, "typing": req.services.typing.snapshot()}


@routes.get("/typing", auth=Auth.REPLICATION, prefixes=PREFIXES)
async def replicationTyping(req: ApiRequest) -> Any:
    _require_main(req)
    return req.services.typing.snapshot()


@routes.post("/presence/syncing", auth=Auth.REPLICATION, prefixes=PREFIXES)
async def replicationPresenceSyncing(req: ApiRequest) -> Any:
    _require_main(req)
    body = await req.json(allow_empty=False)
    user_id, device_id, set_presence = body.get("user_id"), body.get("device_id"), body.get("set_presence")
    if not isinstance(user_id, str) or not isinstance(device_id, str | None):
        raise MatrixError(400, "M_BAD_JSON", "user_id (string) and device_id (string or null) are required")
    if not isinstance(set_presence, str | None):
        raise MatrixError(400, "M_BAD_JSON", "set_presence must be a string")
    presence = req.services.presence
    if get_bool(body, "syncing", required=True):
        await presence.sync_started(user_id, device_id, set_presence)
    else:
        presence.sync_finished(user_id, device_id, set_presence)
    return {}


@routes.post("/events/purged", auth=Auth.REPLICATION, prefixes=PREFIXES)
async def replicationEventsPurged(req: ApiRequest) -> Any:
    """The background worker purged these events (retention): main drops them from its event
    cache and announces the same to the other workers."""
    _require_main(req)
    body = await req.json(allow_empty=False)
    event_ids = body.get("event_ids")
    if not isinstance(event_ids, list) or not all(isinstance(e, str) for e in event_ids):
        raise MatrixError(400, "M_BAD_JSON", "event_ids must be a list of strings")
    req.services.retention.forget(event_ids)
    return {}
