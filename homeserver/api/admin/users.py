"""Synapse's "User Admin API" (docs/admin_api/user_admin_api.md in Synapse; our docs/admin.md):
listing, querying, creating and modifying accounts, deactivation, passwords, sessions, devices,
rooms, media, shadow-bans, rate-limit overrides, suspension, pushers and account data.

Paths and response shapes are Synapse's so synapse-admin and scripts work unchanged. Every route is
declared `Auth.ADMIN`: no token → 401, a non-admin → 403 M_FORBIDDEN before any parameter check.
"""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.params import get_bool, get_int, get_str, get_str_list
from homeserver.http.routing import ApiRequest, Auth, JsonResponse, Router
from homeserver.services.admin_users import (
    MEDIA_ORDER,
    USER_ORDER,
    RatelimitOverride,
    UserListQuery,
    device_json,
    media_json,
)

routes = Router()
V1 = ("/_synapse/admin/v1",)
V2 = ("/_synapse/admin/v2",)
V3 = ("/_synapse/admin/v3",)
DEFAULT_LIMIT = 100


# -- query parsing (Synapse's parse_integer / parse_boolean / parse_enum errors) ----------------------


def _int(req: ApiRequest, key: str, default: int) -> int:
    raw = req.query.get(key)
    if raw is None:
        return default
    if not raw.isdigit():
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            f"Query parameter {key!r} must be a string representing a positive integer.",
        )
    return int(raw)


def _bool(req: ApiRequest, key: str) -> bool | None:
    raw = req.query.get(key)
    if raw is None:
        return None
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise MatrixError(
        400, "M_INVALID_PARAM", f"Boolean query parameter {key!r} must be one of ['true', 'false']"
    )


def _choice(req: ApiRequest, key: str, allowed: Any, default: str) -> str:
    raw = req.query.get(key, default)
    if raw not in allowed:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter {key!r} must be one of {sorted(allowed)}")
    return raw


def _paging(req: ApiRequest) -> tuple[int, int]:
    return _int(req, "from", 0), _int(req, "limit", DEFAULT_LIMIT)


def _uid(req: ApiRequest) -> str:
    return req.path["userId"]


# -- accounts -----------------------------------------------------------------------------------


@routes.get("/users", auth=Auth.ADMIN, prefixes=V2)
async def list_users(req: ApiRequest) -> Any:
    # v2: `deactivated=true` includes deactivated accounts, absent/false leaves them out.
    return await _list_users(
        req, include_deactivated=_bool(req, "deactivated") is True, only_deactivated=False
    )


@routes.get("/users", auth=Auth.ADMIN, prefixes=V3)
async def list_users_v3(req: ApiRequest) -> Any:
    # v3 (what synapse-admin calls): `deactivated` filters: true → only deactivated accounts,
    # false → none of them, absent → all accounts.
    deactivated = _bool(req, "deactivated")
    return await _list_users(
        req, include_deactivated=deactivated is not False, only_deactivated=deactivated is True
    )


async def _list_users(req: ApiRequest, *, include_deactivated: bool, only_deactivated: bool) -> Any:
    offset, limit = _paging(req)
    order_by = _choice(req, "order_by", USER_ORDER, "name")
    direction = _choice(req, "dir", ("f", "b"), "f")
    name = req.query.get("name")
    query = UserListQuery(
        user_id=req.query.get("user_id") or None,
        name=name or None,
        guests=_bool(req, "guests") is not False,
        deactivated=include_deactivated,
        only_deactivated=only_deactivated,
        admins=_bool(req, "admins"),
        locked=_bool(req, "locked") is True,
        not_user_types=tuple(req.query.getall("not_user_type", [])),
    )
    return await req.services.admin_users.list_users(
        query, offset=offset, limit=limit, order_by=order_by, descending=direction == "b"
    )


@routes.get("/users/{userId}", auth=Auth.ADMIN, prefixes=V2)
async def get_user(req: ApiRequest) -> Any:
    return await req.services.admin_users.user_info(_uid(req))


@routes.put("/users/{userId}", auth=Auth.ADMIN, prefixes=V2)
async def put_user(req: ApiRequest) -> Any:
    body = await req.json()
    created, info = await req.services.admin_users.upsert_user(req.user, _uid(req), body)
    return JsonResponse(info, 201 if created else 200)


@routes.post("/deactivate/{userId}", auth=Auth.ADMIN, prefixes=V1)
async def deactivate(req: ApiRequest) -> Any:
    body = await req.json()
    erase = bool(get_bool(body, "erase", default=False))
    await req.services.admin_users.deactivate(req.user, _uid(req), erase=erase)
    return {"id_server_unbind_result": "success"}


@routes.post("/reset_password/{userId}", auth=Auth.ADMIN, prefixes=V1)
async def reset_password(req: ApiRequest) -> Any:
    body = await req.json()
    new_password = get_str(body, "new_password", required=True)
    logout_devices = bool(get_bool(body, "logout_devices", default=True))
    await req.services.admin_users.reset_password(
        req.user, _uid(req), new_password, logout_devices=logout_devices
    )
    return {}


@routes.get("/whois/{userId}", auth=Auth.ADMIN, prefixes=V1)
async def whois(req: ApiRequest) -> Any:
    return await req.services.admin_users.whois(_uid(req))


@routes.post("/users/{userId}/login", auth=Auth.ADMIN, prefixes=V1)
async def login_as(req: ApiRequest) -> Any:
    body = await req.json()
    valid_until = get_int(body, "valid_until_ms")
    token = await req.services.admin_users.login_as(req.user, _uid(req), valid_until)
    return {"access_token": token}


@routes.get("/username_available", auth=Auth.ADMIN, prefixes=V1)
async def username_available(req: ApiRequest) -> Any:
    username = req.query.get("username")
    if not username:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing string query parameter 'username'")
    if not await req.services.accounts.is_available(username):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    return {"available": True}


# -- devices ------------------------------------------------------------------------------------


@routes.get("/users/{userId}/devices", auth=Auth.ADMIN, prefixes=V2)
async def list_devices(req: ApiRequest) -> Any:
    devices = await req.services.admin_users.list_devices(_uid(req))
    return {"devices": [device_json(d) for d in devices], "total": len(devices)}


@routes.post("/users/{userId}/devices", auth=Auth.ADMIN, prefixes=V2)
async def create_device(req: ApiRequest) -> Any:
    body = await req.json()
    device_id = get_str(body, "device_id", required=True)
    await req.services.admin_users.create_device(req.user, _uid(req), device_id)
    return JsonResponse({}, 201)


@routes.get("/users/{userId}/devices/{deviceId}", auth=Auth.ADMIN, prefixes=V2)
async def get_device(req: ApiRequest) -> Any:
    return device_json(await req.services.admin_users.get_device(_uid(req), req.path["deviceId"]))


@routes.put("/users/{userId}/devices/{deviceId}", auth=Auth.ADMIN, prefixes=V2)
async def update_device(req: ApiRequest) -> Any:
    body = await req.json()
    display_name = get_str(body, "display_name")
    await req.services.admin_users.update_device(req.user, _uid(req), req.path["deviceId"], display_name)
    return {}


@routes.delete("/users/{userId}/devices/{deviceId}", auth=Auth.ADMIN, prefixes=V2)
async def delete_device(req: ApiRequest) -> Any:
    await req.services.admin_users.delete_devices(req.user, _uid(req), [req.path["deviceId"]])
    return {}


@routes.post("/users/{userId}/delete_devices", auth=Auth.ADMIN, prefixes=V2)
async def delete_devices(req: ApiRequest) -> Any:
    body = await req.json()
    devices = get_str_list(body, "devices", required=True)
    await req.services.admin_users.delete_devices(req.user, _uid(req), devices)
    return {}


# -- rooms, pushers, account data -----------------------------------------------------------------


@routes.get("/users/{userId}/memberships", auth=Auth.ADMIN, prefixes=V1)
async def memberships(req: ApiRequest) -> Any:
    return {"memberships": await req.services.admin_users.memberships(_uid(req))}


@routes.get("/users/{userId}/sent_invite_count", auth=Auth.ADMIN, prefixes=V1)
async def sent_invite_count(req: ApiRequest) -> Any:
    count = await req.services.admin_users.sent_invite_count(_uid(req), _int(req, "from_ts", 0))
    return {"invite_count": count}


@routes.get("/users/{userId}/cumulative_joined_room_count", auth=Auth.ADMIN, prefixes=V1)
async def cumulative_joined_room_count(req: ApiRequest) -> Any:
    count = await req.services.admin_users.cumulative_joined_room_count(_uid(req), _int(req, "from_ts", 0))
    return {"cumulative_joined_room_count": count}


@routes.get("/users/{userId}/joined_rooms", auth=Auth.ADMIN, prefixes=V1)
async def joined_rooms(req: ApiRequest) -> Any:
    rooms = await req.services.admin_users.joined_rooms(_uid(req))
    return {"joined_rooms": rooms, "total": len(rooms)}


@routes.get("/users/{userId}/pushers", auth=Auth.ADMIN, prefixes=V1)
async def list_pushers(req: ApiRequest) -> Any:
    user_id = _uid(req)
    await req.services.admin_users.existing(user_id)
    pushers = await req.services.pushers.list_for_user(user_id)
    body = [
        {
            "app_display_name": p.app_display_name,
            "app_id": p.app_id,
            "data": p.data,
            "device_display_name": p.device_display_name,
            "kind": p.kind,
            "lang": p.lang,
            "profile_tag": p.profile_tag or "",
            "pushkey": p.pushkey,
        }
        for p in pushers
    ]
    return {"pushers": body, "total": len(body)}


@routes.get("/users/{userId}/accountdata", auth=Auth.ADMIN, prefixes=V1)
async def account_data(req: ApiRequest) -> Any:
    return {"account_data": await req.services.admin_users.account_data_of(_uid(req))}


# -- media --------------------------------------------------------------------------------------


def _media_order(req: ApiRequest) -> tuple[str, bool]:
    # Without order_by and dir: newest first (Synapse's default).
    if "order_by" not in req.query and "dir" not in req.query:
        return "created_ts", True
    order_by = _choice(req, "order_by", MEDIA_ORDER, "created_ts")
    return order_by, _choice(req, "dir", ("f", "b"), "f") == "b"


@routes.get("/users/{userId}/media", auth=Auth.ADMIN, prefixes=V1)
async def list_media(req: ApiRequest) -> Any:
    offset, limit = _paging(req)
    order_by, descending = _media_order(req)
    media, total = await req.services.admin_users.list_media(
        _uid(req), offset=offset, limit=limit, order_by=order_by, descending=descending
    )
    body: dict[str, Any] = {"media": [media_json(m) for m in media], "total": total}
    if offset + len(media) < total and media:
        body["next_token"] = offset + len(media)
    return body


@routes.delete("/users/{userId}/media", auth=Auth.ADMIN, prefixes=V1)
async def delete_media(req: ApiRequest) -> Any:
    offset, limit = _paging(req)
    order_by, descending = _media_order(req)
    deleted = await req.services.admin_users.delete_media(
        req.user, _uid(req), offset=offset, limit=limit, order_by=order_by, descending=descending
    )
    return {"deleted_media": deleted, "total": len(deleted)}


# -- restrictions -------------------------------------------------------------------------------


@routes.post("/users/{userId}/shadow_ban", auth=Auth.ADMIN, prefixes=V1)
async def shadow_ban(req: ApiRequest) -> Any:
    await req.services.admin_users.set_shadow_banned(req.user, _uid(req), True)
    return {}


@routes.delete("/users/{userId}/shadow_ban", auth=Auth.ADMIN, prefixes=V1)
async def unshadow_ban(req: ApiRequest) -> Any:
    await req.services.admin_users.set_shadow_banned(req.user, _uid(req), False)
    return {}


@routes.put("/suspend/{userId}", auth=Auth.ADMIN, prefixes=V1)
async def suspend(req: ApiRequest) -> Any:
    body = await req.json()
    value = get_bool(body, "suspend", required=True)
    user_id = _uid(req)
    await req.services.admin_users.set_suspended(req.user, user_id, bool(value))
    return {f"user_{user_id}_suspended": bool(value)}


@routes.get("/users/{userId}/override_ratelimit", auth=Auth.ADMIN, prefixes=V1)
async def get_ratelimit(req: ApiRequest) -> Any:
    user_id = _uid(req)
    admin_users = req.services.admin_users
    admin_users.local_user_id(user_id, "Can only look up local users")
    await admin_users.existing(user_id)
    override = req.services.restrictions.get_override(user_id)
    if override is None:
        return {}
    return {"messages_per_second": override.messages_per_second, "burst_count": override.burst_count}


@routes.post("/users/{userId}/override_ratelimit", auth=Auth.ADMIN, prefixes=V1)
async def set_ratelimit(req: ApiRequest) -> Any:
    body = await req.json()
    values = {}
    for key in ("messages_per_second", "burst_count"):
        value = body.get(key, 0)
        if type(value) is not int or value < 0:
            raise MatrixError(400, "M_INVALID_PARAM", f"{key!r} parameter must be a positive integer.")
        values[key] = value
    override = RatelimitOverride(values["messages_per_second"], values["burst_count"])
    await req.services.admin_users.set_ratelimit(req.user, _uid(req), override)
    return values


@routes.delete("/users/{userId}/override_ratelimit", auth=Auth.ADMIN, prefixes=V1)
async def delete_ratelimit(req: ApiRequest) -> Any:
    await req.services.admin_users.set_ratelimit(req.user, _uid(req), None)
    return {}
