"""Synapse's room admin API (docs/admin_api/rooms.md, purge_history_api.md): /_synapse/admin/v1/rooms
and v2 room deletion. Auth is ADMIN on every route, so non-admins get 403 before any 400/404."""

from __future__ import annotations

from typing import Any

from homeserver.api.admin.common import (
    ADMIN_V1,
    ADMIN_V2,
    query_choice,
    query_direction,
    query_non_negative,
    query_opt_bool,
)
from homeserver.core import ids
from homeserver.core.errors import MatrixError
from homeserver.http.params import get_bool, get_str
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.services.admin_rooms import ORDERS, RoomListQuery
from homeserver.services.timeline import MAX_LIMIT

routes = Router()


def _room_id(req: ApiRequest) -> str:
    room_id = req.path["roomId"]
    if not ids.is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"{room_id} is not a legal room ID")
    return room_id


@routes.get("/rooms", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def list_rooms(req: ApiRequest) -> Any:
    q = req.query
    search_term = q.get("search_term")
    if search_term == "":
        raise MatrixError(400, "M_INVALID_PARAM", "search_term cannot be an empty string")
    query = RoomListQuery(
        start=query_non_negative(q, "from", 0) or 0,
        limit=query_non_negative(q, "limit", 100) or 0,
        order_by=query_choice(q, "order_by", "name", tuple(ORDERS)),
        backwards=query_direction(q),
        search_term=search_term,
        public_rooms=query_opt_bool(q, "public_rooms"),
        empty_rooms=query_opt_bool(q, "empty_rooms"),
    )
    return await req.services.admin_rooms.list_rooms(query)


@routes.get("/rooms/{roomId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_room(req: ApiRequest) -> Any:
    return await req.services.admin_rooms.room_details(_room_id(req))


@routes.get("/rooms/{roomId}/members", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_room_members(req: ApiRequest) -> Any:
    return await req.services.admin_rooms.members(_room_id(req))


@routes.get("/rooms/{roomId}/state", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_room_state(req: ApiRequest) -> Any:
    return await req.services.admin_rooms.room_state(_room_id(req), req.query.get("type"))


@routes.get("/rooms/{roomId}/messages", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_room_messages(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    q = req.query
    backwards = query_direction(q)
    limit = min(query_non_negative(q, "limit", 10) or 0, MAX_LIMIT)
    flt = await req.services.filters.room_event_filter(req.user, q.get("filter"))
    await req.services.admin_rooms.snapshot(room_id)  # 404 for an unknown room
    return await req.services.timeline.get_messages(
        req.user.user_id,
        req.user.device_id,
        room_id,
        from_token=q.get("from") or None,
        to_token=q.get("to") or None,
        backwards=backwards,
        limit=limit,
        flt=flt,
        privileged=True,
    )


@routes.get("/rooms/{roomId}/context/{eventId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_event_context(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    limit = min(query_non_negative(req.query, "limit", 10) or 0, MAX_LIMIT)
    flt = await req.services.filters.room_event_filter(req.user, req.query.get("filter"))
    await req.services.admin_rooms.snapshot(room_id)
    return await req.services.timeline.get_context(
        req.user.user_id,
        req.user.device_id,
        room_id,
        req.path["eventId"],
        limit=limit,
        flt=flt,
        privileged=True,
    )


# -- block --------------------------------------------------------------------------------------------


@routes.get("/rooms/{roomId}/block", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_room_block(req: ApiRequest) -> Any:
    return await req.services.admin_rooms.get_block(_room_id(req))


@routes.put("/rooms/{roomId}/block", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def set_room_block(req: ApiRequest) -> Any:
    room_id = _room_id(req)
    body = await req.json()
    block = get_bool(body, "block", required=True)
    return await req.services.admin_rooms.set_block(req.user.user_id, room_id, block)


# -- membership ---------------------------------------------------------------------------------------


@routes.post("/rooms/{roomIdOrAlias}/make_room_admin", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def make_room_admin(req: ApiRequest) -> Any:
    body = await req.json()
    user_id = get_str(body, "user_id")
    await req.services.admin_rooms.make_room_admin(req.user.user_id, req.path["roomIdOrAlias"], user_id)
    return {}


@routes.post("/join/{roomIdOrAlias}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def join_user_to_room(req: ApiRequest) -> Any:
    body = await req.json()
    user_id = get_str(body, "user_id", required=True)
    room_id = await req.services.admin_rooms.join_user(req.user.user_id, req.path["roomIdOrAlias"], user_id)
    return {"room_id": room_id}


# -- forward extremities ----------------------------------------------------------------------------


@routes.get("/rooms/{roomIdOrAlias}/forward_extremities", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_forward_extremities(req: ApiRequest) -> Any:
    return await req.services.admin_rooms.forward_extremities(req.path["roomIdOrAlias"])


@routes.delete("/rooms/{roomIdOrAlias}/forward_extremities", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def delete_forward_extremities(req: ApiRequest) -> Any:
    return await req.services.admin_rooms.delete_forward_extremities(
        req.user.user_id, req.path["roomIdOrAlias"]
    )


# -- deletion -----------------------------------------------------------------------------------------


@routes.delete("/rooms/{roomId}", auth=Auth.ADMIN, prefixes=ADMIN_V2)
async def delete_room_v2(req: ApiRequest) -> Any:
    body = await req.json(
        allow_empty=False
    )  # "The JSON body must not be empty. The body must be at least {}."
    job = await req.services.room_deletion.start_delete(req.user.user_id, req.path["roomId"], body)
    return {"delete_id": job.job_id}


@routes.delete("/rooms/{roomId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def delete_room_v1(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    return await req.services.room_deletion.delete_now(req.user.user_id, req.path["roomId"], body)


@routes.get("/rooms/{roomId}/delete_status", auth=Auth.ADMIN, prefixes=ADMIN_V2)
async def delete_status_by_room(req: ApiRequest) -> Any:
    return await req.services.room_deletion.delete_status_by_room(req.path["roomId"])


@routes.get("/rooms/delete_status/{deleteId}", auth=Auth.ADMIN, prefixes=ADMIN_V2)
async def delete_status_by_id(req: ApiRequest) -> Any:
    return await req.services.room_deletion.delete_status_by_id(req.path["deleteId"])


# -- history purge ------------------------------------------------------------------------------------


@routes.post("/purge_history/{roomId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def purge_history(req: ApiRequest) -> Any:
    body = await req.json()
    purge_id = await req.services.room_deletion.start_purge_history(
        req.user.user_id, req.path["roomId"], None, body
    )
    return {"purge_id": purge_id}


@routes.post("/purge_history/{roomId}/{eventId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def purge_history_to_event(req: ApiRequest) -> Any:
    body = await req.json()
    purge_id = await req.services.room_deletion.start_purge_history(
        req.user.user_id, req.path["roomId"], req.path["eventId"], body
    )
    return {"purge_id": purge_id}


@routes.get("/purge_history_status/{purgeId}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def purge_history_status(req: ApiRequest) -> Any:
    return await req.services.room_deletion.purge_status(req.path["purgeId"])
