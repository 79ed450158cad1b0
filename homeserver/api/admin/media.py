"""Synapse's media admin API (docs/admin_api/media_admin_api.md, statistics.md)."""

from __future__ import annotations

from typing import Any

from homeserver.api.admin.common import (
    ADMIN_V1,
    query_choice,
    query_direction,
    query_non_negative,
    query_opt_bool,
)
from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.services.admin_media import STATS_ORDERS

routes = Router()

# Synapse refuses before_ts values that look like seconds, not milliseconds.
_YEAR_1970_MS = 30_000_000_000


@routes.get("/room/{roomId}/media", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def list_room_media(req: ApiRequest) -> Any:
    return await req.services.admin_media.room_media(req.path["roomId"])


@routes.get("/media/{serverName}/{mediaId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_media_info(req: ApiRequest) -> Any:
    return await req.services.admin_media.media_info(req.path["serverName"], req.path["mediaId"])


# -- quarantine ---------------------------------------------------------------------------------------


@routes.post("/media/quarantine/{serverName}/{mediaId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def quarantine_media(req: ApiRequest) -> Any:
    await req.services.admin_media.quarantine(req.user.user_id, req.path["serverName"], req.path["mediaId"])
    return {}


@routes.post("/media/unquarantine/{serverName}/{mediaId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def unquarantine_media(req: ApiRequest) -> Any:
    await req.services.admin_media.unquarantine(req.user.user_id, req.path["serverName"], req.path["mediaId"])
    return {}


@routes.post("/room/{roomId}/media/quarantine", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def quarantine_room_media(req: ApiRequest) -> Any:
    count = await req.services.admin_media.quarantine_room(req.user.user_id, req.path["roomId"])
    return {"num_quarantined": count}


@routes.post("/quarantine_media/{roomId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def quarantine_room_media_legacy(req: ApiRequest) -> Any:
    count = await req.services.admin_media.quarantine_room(req.user.user_id, req.path["roomId"])
    return {"num_quarantined": count}


@routes.post("/user/{userId}/media/quarantine", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def quarantine_user_media(req: ApiRequest) -> Any:
    count = await req.services.admin_media.quarantine_user(req.user.user_id, req.path["userId"])
    return {"num_quarantined": count}


@routes.post("/media/protect/{mediaId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def protect_media(req: ApiRequest) -> Any:
    await req.services.admin_media.protect(req.user.user_id, req.path["mediaId"], True)
    return {}


@routes.post("/media/unprotect/{mediaId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def unprotect_media(req: ApiRequest) -> Any:
    await req.services.admin_media.protect(req.user.user_id, req.path["mediaId"], False)
    return {}


# -- deletion -----------------------------------------------------------------------------------------


@routes.delete("/media/{serverName}/{mediaId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def delete_media(req: ApiRequest) -> Any:
    return await req.services.admin_media.delete_one(
        req.user.user_id, req.path["serverName"], req.path["mediaId"]
    )


def _before_ts(req: ApiRequest) -> int:
    raw = req.query.get("before_ts")
    if raw is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required integer query parameter before_ts")
    before_ts = query_non_negative(req.query, "before_ts", None)
    assert before_ts is not None
    if before_ts < _YEAR_1970_MS:
        raise MatrixError(
            400,
            "M_INVALID_PARAM",
            "Query parameter before_ts you provided is from the year 1970. "
            "Double check that you are providing a timestamp in milliseconds.",
        )
    return before_ts


async def _delete_old(req: ApiRequest) -> Any:
    before_ts = _before_ts(req)
    size_gt = query_non_negative(req.query, "size_gt", 0) or 0
    keep_profiles = query_opt_bool(req.query, "keep_profiles")
    return await req.services.admin_media.delete_old(
        req.user.user_id, before_ts=before_ts, size_gt=size_gt, keep_profiles=keep_profiles is not False
    )


@routes.post("/media/delete", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def delete_old_media(req: ApiRequest) -> Any:
    return await _delete_old(req)


@routes.post("/media/{serverName}/delete", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def delete_old_media_deprecated(req: ApiRequest) -> Any:
    if req.path["serverName"] != req.services.config.server_name:
        raise MatrixError(400, "M_UNKNOWN", "Can only delete local media")
    return await _delete_old(req)


@routes.post("/purge_media_cache", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def purge_media_cache(req: ApiRequest) -> Any:
    before_ts = _before_ts(req)
    return await req.services.admin_media.purge_media_cache(req.user.user_id, before_ts)


# -- statistics ---------------------------------------------------------------------------------------


@routes.get("/statistics/users/media", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def user_media_statistics(req: ApiRequest) -> Any:
    q = req.query
    start = query_non_negative(q, "from", 0) or 0
    limit = query_non_negative(q, "limit", 100) or 0
    from_ts = query_non_negative(q, "from_ts", None)
    until_ts = query_non_negative(q, "until_ts", None)
    if from_ts is not None and until_ts is not None and until_ts <= from_ts:
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter until_ts must be greater than from_ts.")
    search_term = q.get("search_term")
    if search_term == "":
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter search_term cannot be an empty string.")
    return await req.services.admin_media.user_media_statistics(
        start=start,
        limit=limit,
        order_by=query_choice(q, "order_by", "user_id", STATS_ORDERS),
        backwards=query_direction(q),
        from_ts=from_ts,
        until_ts=until_ts,
        search_term=search_term,
    )
