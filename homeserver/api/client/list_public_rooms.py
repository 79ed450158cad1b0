"""The published room directory (list_public_rooms.yaml): getRoomVisibilityOnDirectory,
setRoomVisibilityOnDirectory, getPublicRooms, queryPublicRooms."""

from __future__ import annotations

from typing import Any

from homeserver.core import ids
from homeserver.core.errors import MatrixError, missing_token
from homeserver.http.params import get_bool, get_dict, get_int, get_list, get_str, query_bool, query_int
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.services.directory import PublicRoomsQuery

routes = Router()


@routes.get("/directory/list/room/{roomId}", auth=Auth.NONE)
async def getRoomVisibilityOnDirectory(req: ApiRequest) -> Any:
    return {"visibility": await req.services.directory.get_visibility(req.path["roomId"])}


@routes.put("/directory/list/room/{roomId}")
async def setRoomVisibilityOnDirectory(req: ApiRequest) -> Any:
    body = await req.json()
    visibility = get_str(body, "visibility", default="public")
    if visibility not in ("public", "private"):
        raise MatrixError(400, "M_BAD_JSON", "'visibility' must be public or private")
    await req.services.directory.set_visibility(req.user, req.path["roomId"], visibility)
    return {}


def _remote_server(req: ApiRequest) -> str | None:
    """The `server` parameter when it names another server (M_INVALID_PARAM when malformed)."""
    server = req.query.get("server")
    if not server or server == req.services.config.server_name:
        return None
    if not ids.is_valid_server_name(server):
        raise MatrixError(400, "M_INVALID_PARAM", f"Invalid server name: {server}")
    return server


def public_rooms_query(body: dict[str, Any]) -> tuple[PublicRoomsQuery, dict[str, Any], bool]:
    """A queryPublicRooms body (client or federation): the query, its `filter` object and
    `include_all_networks`."""
    limit = get_int(body, "limit")
    if limit is not None and limit < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' must not be negative")
    since = get_str(body, "since")
    search_filter = get_dict(body, "filter", default={})
    search_term = get_str(search_filter, "generic_search_term")
    room_types = get_list(search_filter, "room_types")
    if room_types is not None and not all(t is None or isinstance(t, str) for t in room_types):
        raise MatrixError(400, "M_BAD_JSON", "'room_types' must be an array of strings and nulls")
    include_all_networks = get_bool(body, "include_all_networks", default=False)
    instance_id = get_str(body, "third_party_instance_id")
    if include_all_networks and instance_id is not None:
        raise MatrixError(400, "M_INVALID_PARAM", "Can't use include_all_networks with an explicit network")
    query = PublicRoomsQuery(
        limit=limit,
        since=since or None,
        search_term=search_term.strip() if search_term else None,
        room_types=tuple(room_types) if room_types else None,
        third_party_instance_id=instance_id,
    )
    return query, search_filter, include_all_networks


def public_rooms_args(req: ApiRequest) -> tuple[PublicRoomsQuery, bool]:
    """getPublicRooms query parameters (client or federation): the query and
    `include_all_networks`."""
    limit = query_int(req.query, "limit")
    include_all_networks = query_bool(req.query, "include_all_networks")
    instance_id = req.query.get("third_party_instance_id") or None
    query = PublicRoomsQuery(
        limit=limit,
        since=req.query.get("since") or None,
        third_party_instance_id=None if include_all_networks else instance_id,
    )
    return query, include_all_networks


@routes.get("/publicRooms", auth=Auth.OPTIONAL)
async def getPublicRooms(req: ApiRequest) -> Any:
    server = _remote_server(req)
    # Anonymous access is an operator's choice (Synapse's allow_public_rooms_without_auth), and
    # never covers proxying a remote server's directory.
    if req.requester is None and (
        server is not None or not req.services.config.allow_public_rooms_without_auth
    ):
        raise missing_token()
    query, include_all_networks = public_rooms_args(req)
    if server is not None:
        return await req.services.remote_rooms.public_rooms(
            server,
            limit=query.limit,
            since=query.since,
            include_all_networks=include_all_networks,
            third_party_instance_id=query.third_party_instance_id,
        )
    return await req.services.directory.list_public_rooms(query)


@routes.post("/publicRooms")
async def queryPublicRooms(req: ApiRequest) -> Any:
    server = _remote_server(req)
    query, search_filter, include_all_networks = public_rooms_query(await req.json())
    if server is not None:
        return await req.services.remote_rooms.public_rooms(
            server,
            limit=query.limit,
            since=query.since,
            search_filter=search_filter or None,
            include_all_networks=include_all_networks,
            third_party_instance_id=query.third_party_instance_id,
        )
    return await req.services.directory.list_public_rooms(query)
