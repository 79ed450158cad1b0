"""Server-side key backups (key_backup.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import CLIENT_UNSTABLE, CLIENT_V3_R0, ApiRequest, Router
from homeserver.services.key_backup import parse_room_key, parse_room_keys, parse_sessions

routes = Router()

PREFIXES = CLIENT_V3_R0 + CLIENT_UNSTABLE


# -- versions ------------------------------------------------------------------------------------


@routes.post("/room_keys/version", prefixes=PREFIXES)
async def postRoomKeysVersion(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    return {"version": await req.services.key_backup.create_version(req.user.user_id, body)}


@routes.get("/room_keys/version", prefixes=PREFIXES)
async def getRoomKeysVersionCurrent(req: ApiRequest) -> Any:
    return await req.services.key_backup.get_version(req.user.user_id, None)


@routes.get("/room_keys/version/{version}", prefixes=PREFIXES)
async def getRoomKeysVersion(req: ApiRequest) -> Any:
    return await req.services.key_backup.get_version(req.user.user_id, req.path["version"])


@routes.put("/room_keys/version/{version}", prefixes=PREFIXES)
async def putRoomKeysVersion(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    await req.services.key_backup.update_version(req.user.user_id, req.path["version"], body)
    return {}


@routes.delete("/room_keys/version/{version}", prefixes=PREFIXES)
async def deleteRoomKeysVersion(req: ApiRequest) -> Any:
    await req.services.key_backup.delete_version(req.user.user_id, req.path["version"])
    return {}


@routes.delete("/room_keys/version", prefixes=PREFIXES)
async def deleteRoomKeysVersionCurrent(req: ApiRequest) -> Any:
    # Not in the spec; Synapse serves it (deletes the current version).
    await req.services.key_backup.delete_version(req.user.user_id, None)
    return {}


# -- keys ----------------------------------------------------------------------------------------


@routes.put("/room_keys/keys", prefixes=PREFIXES)
async def putRoomKeys(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    keys = parse_room_keys(body)
    return await req.services.key_backup.put_keys(req.user.user_id, req.query.get("version"), keys)


@routes.put("/room_keys/keys/{roomId}", prefixes=PREFIXES)
async def putRoomKeysByRoomId(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    keys = parse_sessions(req.path["roomId"], body)
    return await req.services.key_backup.put_keys(req.user.user_id, req.query.get("version"), keys)


@routes.put("/room_keys/keys/{roomId}/{sessionId}", prefixes=PREFIXES)
async def putRoomKeyBySessionId(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    key = parse_room_key(req.path["roomId"], req.path["sessionId"], body)
    return await req.services.key_backup.put_keys(req.user.user_id, req.query.get("version"), [key])


@routes.get("/room_keys/keys", prefixes=PREFIXES)
async def getRoomKeys(req: ApiRequest) -> Any:
    return await req.services.key_backup.get_keys(req.user.user_id, req.query.get("version"))


@routes.get("/room_keys/keys/{roomId}", prefixes=PREFIXES)
async def getRoomKeysByRoomId(req: ApiRequest) -> Any:
    return await req.services.key_backup.get_keys(
        req.user.user_id, req.query.get("version"), req.path["roomId"]
    )


@routes.get("/room_keys/keys/{roomId}/{sessionId}", prefixes=PREFIXES)
async def getRoomKeyBySessionId(req: ApiRequest) -> Any:
    return await req.services.key_backup.get_keys(
        req.user.user_id, req.query.get("version"), req.path["roomId"], req.path["sessionId"]
    )


@routes.delete("/room_keys/keys", prefixes=PREFIXES)
async def deleteRoomKeys(req: ApiRequest) -> Any:
    return await req.services.key_backup.delete_keys(req.user.user_id, req.query.get("version"))


@routes.delete("/room_keys/keys/{roomId}", prefixes=PREFIXES)
async def deleteRoomKeysByRoomId(req: ApiRequest) -> Any:
    return await req.services.key_backup.delete_keys(
        req.user.user_id, req.query.get("version"), req.path["roomId"]
    )


@routes.delete("/room_keys/keys/{roomId}/{sessionId}", prefixes=PREFIXES)
async def deleteRoomKeyBySessionId(req: ApiRequest) -> Any:
    return await req.services.key_backup.delete_keys(
        req.user.user_id, req.query.get("version"), req.path["roomId"], req.path["sessionId"]
    )
