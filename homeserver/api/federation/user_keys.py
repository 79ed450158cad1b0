"""Devices and end-to-end encryption keys of our users, for other servers (user_devices.yaml,
user_keys.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)


@routes.get("/user/devices/{userId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getUserDevices(req: ApiRequest) -> dict[str, Any]:
    return await req.services.e2e_keys.devices_for_server(req.path["userId"])


@routes.post("/user/keys/query", auth=Auth.SERVER, prefixes=FED_V1)
async def queryUserEncryptionKeys(req: ApiRequest) -> dict[str, Any]:
    body = await req.json()
    if "device_keys" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter 'device_keys'")
    return await req.services.e2e_keys.query_keys_for_server(body["device_keys"])


@routes.post("/user/keys/claim", auth=Auth.SERVER, prefixes=FED_V1)
async def claimUserEncryptionKeys(req: ApiRequest) -> dict[str, Any]:
    body = await req.json()
    if "one_time_keys" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameter 'one_time_keys'")
    return await req.services.e2e_keys.claim_keys_for_server(body["one_time_keys"])
