"""Spaces over federation (space_hierarchy.yaml): getSpaceHierarchy."""

from __future__ import annotations

from typing import Any

from homeserver.http.params import query_bool
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.get("/hierarchy/{roomId}", auth=Auth.SERVER, prefixes=("/_matrix/federation/v1",))
async def getSpaceHierarchy(req: ApiRequest) -> dict[str, Any]:
    return await req.services.federation_hierarchy.hierarchy(
        req.origin, req.path["roomId"], suggested_only=query_bool(req.query, "suggested_only")
    )
