"""User profiles (profile.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, forbidden
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000


def _target_user(req: ApiRequest) -> str:
    user_id = req.path["userId"]
    if not ids.is_valid_user_id(user_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
    return user_id


async def _profile(req: ApiRequest, user_id: str) -> dict[str, Any]:
    profile = await req.services.profiles.get_profile(user_id)
    body: dict[str, Any] = {}
    if profile.displayname is not None:
        body["displayname"] = profile.displayname
    if profile.avatar_url is not None:
        body["avatar_url"] = profile.avatar_url
    return body


@routes.get("/profile/{userId}", auth=Auth.OPTIONAL)
async def getProfile(req: ApiRequest) -> Any:
    return await _profile(req, _target_user(req))


@routes.get("/profile/{userId}/displayname", auth=Auth.OPTIONAL)
async def getDisplayName(req: ApiRequest) -> Any:
    profile = await _profile(req, _target_user(req))
    return {"displayname": profile["displayname"]} if "displayname" in profile else {}


@routes.get("/profile/{userId}/avatar_url", auth=Auth.OPTIONAL)
async def getAvatarUrl(req: ApiRequest) -> Any:
    profile = await _profile(req, _target_user(req))
    return {"avatar_url": profile["avatar_url"]} if "avatar_url" in profile else {}


def _check_own(req: ApiRequest, user_id: str) -> None:
    if user_id != req.user.user_id and not req.user.is_admin:
        raise forbidden("Cannot set another user's profile")


@routes.put("/profile/{userId}/displayname")
async def setDisplayName(req: ApiRequest) -> Any:
    user_id = _target_user(req)
    _check_own(req, user_id)
    body = await req.json()
    if "displayname" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing key 'displayname'")
    value = body.get("displayname")
    if value is not None and not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", "'displayname' must be a string")
    if value is not None and len(value) > MAX_DISPLAYNAME_LEN:
        raise MatrixError(400, "M_BAD_JSON", "Display name too long")
    await req.services.profiles.set_displayname(user_id, value or None)
    return {}


@routes.put("/profile/{userId}/avatar_url")
async def setAvatarUrl(req: ApiRequest) -> Any:
    user_id = _target_user(req)
    _check_own(req, user_id)
    body = await req.json()
    if "avatar_url" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing key 'avatar_url'")
    value = body.get("avatar_url")
    if value is not None and not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", "'avatar_url' must be a string")
    if value is not None and len(value) > MAX_AVATAR_URL_LEN:
        raise MatrixError(400, "M_BAD_JSON", "Avatar URL too long")
    await req.services.profiles.set_avatar_url(user_id, value or None)
    return {}
