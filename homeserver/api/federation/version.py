"""GET /_matrix/federation/v1/version (version.yaml)."""

from __future__ import annotations

from typing import Any

from homeserver import __version__
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.get("/_matrix/federation/v1/version", auth=Auth.NONE, prefixes=())
async def getVersion(req: ApiRequest) -> dict[str, Any]:
    return {"server": {"name": "homeserver", "version": __version__}}
