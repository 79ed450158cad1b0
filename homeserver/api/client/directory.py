"""Room aliases (directory.yaml): setRoomAlias, getRoomIdByAlias, deleteRoomAlias, getLocalAliases."""

from __future__ import annotations

from typing import Any

from homeserver.appservice.registry import check_alias_not_exclusive
from homeserver.core.errors import MatrixError
from homeserver.http.params import get_str
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


def _check_alias_namespace(req: ApiRequest, alias: str) -> None:
    """Appservices create aliases inside their namespaces only; everyone else stays out of
    exclusive alias namespaces (both 400 M_EXCLUSIVE, as Synapse)."""
    user = req.user
    registry = req.services.appservices
    service = registry.get_by_id(user.app_service_id) if user.app_service_id else None
    if service is not None and user.token_hash is None:  # a request made with the as_token
        if not service.is_interested_in_alias(alias):
            raise MatrixError(
                400, "M_EXCLUSIVE", "This application service has not reserved this kind of alias."
            )
        return
    check_alias_not_exclusive(registry, alias)


@routes.put("/directory/room/{roomAlias}")
async def setRoomAlias(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    room_id = get_str(body, "room_id", required=True)
    _check_alias_namespace(req, req.path["roomAlias"])
    await req.services.directory.create_alias(req.user, req.path["roomAlias"], room_id)
    return {}


@routes.get("/directory/room/{roomAlias}", auth=Auth.NONE)
async def getRoomIdByAlias(req: ApiRequest) -> Any:
    return await req.services.directory.resolve_alias(req.path["roomAlias"])


@routes.delete("/directory/room/{roomAlias}")
async def deleteRoomAlias(req: ApiRequest) -> Any:
    await req.services.directory.delete_alias(req.user, req.path["roomAlias"])
    return {}


@routes.get("/rooms/{roomId}/aliases")
async def getLocalAliases(req: ApiRequest) -> Any:
    aliases = await req.services.directory.local_aliases(req.user, req.path["roomId"])
    return {"aliases": aliases}
