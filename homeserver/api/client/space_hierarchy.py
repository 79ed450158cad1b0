"""Spaces (space_hierarchy.yaml): getSpaceHierarchy."""

from __future__ import annotations

from typing import Any

from homeserver.http.params import query_bool, query_int
from homeserver.http.routing import CLIENT_V1, ApiRequest, Router

routes = Router()


@routes.get("/rooms/{roomId}/hierarchy", prefixes=CLIENT_V1)
async def getSpaceHierarchy(req: ApiRequest) -> Any:
    return await req.services.spaces.hierarchy(
        req.user.user_id,
        req.path["roomId"],
        suggested_only=query_bool(req.query, "suggested_only"),
        max_depth=query_int(req.query, "max_depth"),
        limit=query_int(req.query, "limit"),
        from_token=req.query.get("from") or None,
    )
