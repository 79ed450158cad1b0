"""Event authorisation information (event_auth.yaml): getEventAuth."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.get("/event_auth/{roomId}/{eventId}", auth=Auth.SERVER, prefixes=("/_matrix/federation/v1",))
async def getEventAuth(req: ApiRequest) -> dict[str, Any]:
    return await req.services.federation_reads.event_auth(req.origin, req.path["roomId"], req.path["eventId"])
