"""The published room directory over federation (public_rooms.yaml): getPublicRooms,
queryPublicRooms. Served only with `allow_public_rooms_over_federation: true` (else 403, as
Synapse); rooms created with `m.federate: false` are never listed to other servers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from homeserver.api.client.list_public_rooms import public_rooms_args, public_rooms_query
from homeserver.core.errors import MatrixError
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.services.directory import PublicRoomsQuery

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)


def _check_allowed(req: ApiRequest) -> None:
    if not req.services.config.allow_public_rooms_over_federation:
        raise MatrixError(403, "M_FORBIDDEN", f"Federation denied with {req.origin}.")


def _as_synapse_sends(body: dict[str, Any]) -> dict[str, Any]:
    """Synapse sends `include_all_networks` as "true"/"false" (and older versions `limit` as a
    string) in the POST body: accept those spellings too."""
    body = dict(body)
    flag = body.get("include_all_networks")
    if flag in ("true", "false"):
        body["include_all_networks"] = flag == "true"
    limit = body.get("limit")
    if isinstance(limit, str) and limit.isascii() and limit.isdigit() and len(limit) <= 18:
        body["limit"] = int(limit)
    return body


async def _list(req: ApiRequest, query: PublicRoomsQuery) -> dict[str, Any]:
    return await req.services.directory.list_public_rooms(replace(query, federated_only=True))


@routes.get("/publicRooms", auth=Auth.SERVER, prefixes=FED_V1)
async def getPublicRooms(req: ApiRequest) -> dict[str, Any]:
    _check_allowed(req)
    query, _ = public_rooms_args(req)
    return await _list(req, query)


@routes.post("/publicRooms", auth=Auth.SERVER, prefixes=FED_V1)
async def queryPublicRooms(req: ApiRequest) -> dict[str, Any]:
    _check_allowed(req)
    query, _, _ = public_rooms_query(_as_synapse_sends(await req.json()))
    return await _list(req, query)
