"""Pushers: GET /pushers, POST /pushers/set (pusher.yaml). Delivery: services/push_delivery."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from homeserver.core.errors import MatrixError
from homeserver.http.params import get_bool, get_dict, get_str
from homeserver.http.routing import ApiRequest, Router

if TYPE_CHECKING:
    from homeserver.storage.stores.pushers import Pusher

routes = Router()

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NOTIFY_PATH = "/_matrix/push/v1/notify"


def _pusher_json(p: Pusher) -> dict[str, Any]:
    body: dict[str, Any] = {
        "app_display_name": p.app_display_name,
        "app_id": p.app_id,
        "data": p.data,
        "device_display_name": p.device_display_name,
        "kind": p.kind,
        "lang": p.lang,
        "pushkey": p.pushkey,
    }
    if p.profile_tag is not None:
        body["profile_tag"] = p.profile_tag
    return body


@routes.get("/pushers")
async def getPushers(req: ApiRequest) -> Any:
    pushers = await req.services.pushers.list_for_user(req.user.user_id)
    return {"pushers": [_pusher_json(p) for p in pushers]}


@routes.post("/pushers/set")
async def postPusher(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    if "kind" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing parameters: kind")
    kind = body.get("kind")
    app_id = get_str(body, "app_id", required=True)
    pushkey = get_str(body, "pushkey", required=True)
    if kind is None:
        await req.services.pushers.delete(req.user.user_id, app_id, pushkey)
        return {}
    if kind not in ("http", "email"):
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be 'http', 'email' or null")
    missing = [k for k in ("app_display_name", "device_display_name", "lang", "data") if body.get(k) is None]
    if missing:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing parameters: {', '.join(missing)}")
    app_display_name = get_str(body, "app_display_name", required=True)
    device_display_name = get_str(body, "device_display_name", required=True)
    lang = get_str(body, "lang", required=True)
    profile_tag = get_str(body, "profile_tag")
    data = get_dict(body, "data", required=True)
    append = bool(get_bool(body, "append", default=False))
    if len(pushkey) > 512 or len(app_id) > 64:
        raise MatrixError(400, "M_INVALID_PARAM", "pushkey or app_id too long")
    if kind == "http":
        url = data.get("url")
        if not isinstance(url, str):
            raise MatrixError(400, "M_MISSING_PARAM", "'url' is required in 'data' for http pushers")
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed "[" in an IPv6 host
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path != NOTIFY_PATH:
            raise MatrixError(400, "M_INVALID_PARAM", f"'url' must be an http(s) URL ending in {NOTIFY_PATH}")
        fmt = data.get("format")
        if fmt is not None and fmt != "event_id_only":
            raise MatrixError(400, "M_INVALID_PARAM", "'format' must be 'event_id_only' when set")
    elif not _EMAIL.match(pushkey):
        raise MatrixError(400, "M_INVALID_PARAM", "an email pusher's pushkey must be an email address")
    await req.services.pushers.set_pusher(
        append=append,
        user_id=req.user.user_id,
        app_id=app_id,
        pushkey=pushkey,
        kind=kind,
        app_display_name=app_display_name,
        device_display_name=device_display_name,
        profile_tag=profile_tag,
        lang=lang,
        data=data,
        device_id=req.user.device_id,
    )
    return {}
