"""Queries other servers make about our users and aliases (query.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, missing_param
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)


def _required(req: ApiRequest, name: str) -> str:
    value = req.query.get(name)
    if value is None:
        raise missing_param(f"Missing required parameter: {name}")
    return value


@routes.get("/query/profile", auth=Auth.SERVER, prefixes=FED_V1)
async def queryProfile(req: ApiRequest) -> dict[str, Any]:
    if not req.services.config.federation.allow_profile_lookup_over_federation:
        raise MatrixError(403, "M_FORBIDDEN", "Profile lookup over federation is disabled on this homeserver")
    user_id = _required(req, "user_id")
    if not ids.is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
    if ids.server_of(user_id) != req.services.config.server_name:
        raise MatrixError(400, "M_INVALID_PARAM", "User is not hosted on this homeserver")
    field = req.query.get("field")
    profile = await req.services.profiles.get_profile(user_id)
    body: dict[str, Any] = {}
    if field in (None, "displayname") and profile.displayname is not None:
        body["displayname"] = profile.displayname
    if field in (None, "avatar_url") and profile.avatar_url is not None:
        body["avatar_url"] = profile.avatar_url
    return body


@routes.get("/query/directory", auth=Auth.SERVER, prefixes=FED_V1)
async def queryRoomDirectory(req: ApiRequest) -> dict[str, Any]:
    alias = _required(req, "room_alias")
    if not ids.is_valid_room_alias(alias):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias")
    if ids.server_of(alias) != req.services.config.server_name:
        raise MatrixError(400, "M_INVALID_PARAM", "Room alias is not hosted on this homeserver")
    return await req.services.directory.resolve_alias(alias)
