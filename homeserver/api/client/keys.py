"""Device keys, one-time keys and key changes (keys.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.core.tokens import StreamToken
from homeserver.http.routing import CLIENT_UNSTABLE, CLIENT_V3_R0, ApiRequest, Router

routes = Router()

PREFIXES = CLIENT_V3_R0 + CLIENT_UNSTABLE


@routes.post("/keys/upload", prefixes=PREFIXES)
async def uploadKeys(req: ApiRequest) -> Any:
    body = await req.json()
    return await req.services.e2e_keys.upload_keys(req.user, body)


@routes.post("/keys/query", prefixes=PREFIXES)
async def queryKeys(req: ApiRequest) -> Any:
    body = await req.json()
    if "device_keys" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter 'device_keys'")
    return await req.services.e2e_keys.query_keys(req.user.user_id, body["device_keys"], body.get("timeout"))


@routes.post("/keys/claim", prefixes=PREFIXES)
async def claimKeys(req: ApiRequest) -> Any:
    body = await req.json()
    if "one_time_keys" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter 'one_time_keys'")
    return await req.services.e2e_keys.claim_keys(body["one_time_keys"], body.get("timeout"))


@routes.get("/keys/changes", prefixes=PREFIXES)
async def getKeysChanges(req: ApiRequest) -> Any:
    from_raw = req.query.get("from")
    if not from_raw:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter 'from'")
    since = StreamToken.parse(from_raw)
    to_raw = req.query.get("to")
    upto = StreamToken.parse(to_raw) if to_raw else req.services.notifier.current
    changed, left = await req.services.device_lists.changes_between(req.user.user_id, since, upto)
    return {"changed": sorted(changed), "left": sorted(left)}
