"""Appservice-only client API (appservice_ping.yaml): POST /appservice/{appserviceId}/ping."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import MatrixError
from homeserver.http.params import get_str
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


@routes.post("/appservice/{appserviceId}/ping", auth=Auth.APPSERVICE, prefixes=("/_matrix/client/v1",))
async def pingAppservice(req: ApiRequest) -> Any:
    body = await req.json()
    transaction_id = get_str(body, "transaction_id")
    service = req.services.appservices.get_by_id(req.user.app_service_id or "")
    if service is None or service.id != req.path["appserviceId"]:
        raise MatrixError(403, "M_FORBIDDEN", "Provided access token is not for this application service")
    duration_ms = await req.services.appservice_api.ping(service, transaction_id)
    return {"duration_ms": duration_ms}
