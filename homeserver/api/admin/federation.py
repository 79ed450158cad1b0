"""Synapse's federation admin API (docs/usage/administration/admin_api/federation.md):
destinations with their backoff and catch-up state, their rooms, and reset_connection."""

from __future__ import annotations

from typing import Any

from homeserver.api.admin.common import ADMIN_V1, query_choice, query_direction, query_non_negative
from homeserver.federation.sender.admin import ORDER_BY
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()


def _paging(req: ApiRequest) -> tuple[int, int, bool]:
    offset = query_non_negative(req.query, "from", 0) or 0
    limit = query_non_negative(req.query, "limit", 100)
    return offset, 100 if limit is None else limit, query_direction(req.query)


@routes.get("/federation/destinations", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def list_destinations(req: ApiRequest) -> Any:
    offset, limit, backwards = _paging(req)
    order_by = query_choice(req.query, "order_by", "destination", ORDER_BY)
    search = req.query.get("destination") or None
    return await req.services.destination_admin.list_destinations(offset, limit, order_by, backwards, search)


@routes.get("/federation/destinations/{destination}", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def get_destination(req: ApiRequest) -> Any:
    return await req.services.destination_admin.get_destination(req.path["destination"])


@routes.get("/federation/destinations/{destination}/rooms", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def list_destination_rooms(req: ApiRequest) -> Any:
    offset, limit, backwards = _paging(req)
    return await req.services.destination_admin.list_rooms(req.path["destination"], offset, limit, backwards)


@routes.post("/federation/destinations/{destination}/reset_connection", auth=Auth.ADMIN, prefixes=ADMIN_V1)
async def reset_destination_connection(req: ApiRequest) -> Any:
    await req.services.destination_admin.reset_connection(req.path["destination"])
    return {}
