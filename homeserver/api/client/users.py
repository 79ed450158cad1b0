"""The user directory (users.yaml): POST /user_directory/search."""

from __future__ import annotations

from typing import Any

from homeserver.http.params import get_int, get_str
from homeserver.http.routing import ApiRequest, Router

routes = Router()


@routes.post("/user_directory/search", ratelimit="user_directory")
async def searchUserDirectory(req: ApiRequest) -> Any:
    body = await req.json()
    search_term = get_str(body, "search_term", required=True)
    limit = get_int(body, "limit")
    return await req.services.user_directory.search(req.user.user_id, search_term, limit)
