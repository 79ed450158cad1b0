"""Server keys: our own and, as a notary, other servers' (keys_server.yaml, keys_query.yaml).

Served under the `federation` resource (as Synapse does) and the `keys` resource. No auth: servers
fetch these before they can check any signature.
"""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.params import parse_int64
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.get("/_matrix/key/v2/server", auth=Auth.NONE, prefixes=())
async def getServerKey(req: ApiRequest) -> dict[str, Any]:
    return req.services.key_server.own_keys()


@routes.get("/_matrix/key/v2/server/{keyId}", auth=Auth.NONE, prefixes=())
async def getServerKeyById(req: ApiRequest) -> dict[str, Any]:
    # Deprecated form with a key id (ignored, as in Synapse): still asked for by old servers.
    return req.services.key_server.own_keys()


@routes.get("/_matrix/key/v2/query/{serverName}", auth=Auth.NONE, prefixes=())
async def perspectivesKeyQuery(req: ApiRequest) -> dict[str, Any]:
    server_name = req.path["serverName"]
    if not ids.is_valid_server_name(server_name):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid server name")
    raw = req.query.get("minimum_valid_until_ts")
    minimum = parse_int64(raw, "minimum_valid_until_ts") if raw is not None else None
    return {"server_keys": await req.services.key_server.query({server_name: {}}, minimum)}


@routes.post("/_matrix/key/v2/query", auth=Auth.NONE, prefixes=())
async def bulkPerspectivesKeyQuery(req: ApiRequest) -> dict[str, Any]:
    body = await req.json(allow_empty=False)
    server_keys = body.get("server_keys")
    if not isinstance(server_keys, dict):
        raise MatrixError(400, "M_BAD_JSON", "server_keys must be an object")
    criteria: dict[str, dict[str, Any]] = {}
    for server_name, keys in server_keys.items():
        if not ids.is_valid_server_name(server_name):
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid server name {server_name!r}")
        if not isinstance(keys, dict):
            raise MatrixError(400, "M_BAD_JSON", f"server_keys.{server_name} must be an object")
        criteria[server_name] = keys
    return {"server_keys": await req.services.key_server.query(criteria)}
