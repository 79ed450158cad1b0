"""Third-party network lookups (third_party_lookup.yaml). No application service bridges a
third-party protocol yet, so there are no protocols, locations or users to look up."""

from __future__ import annotations

from typing import Any

from homeserver.core.errors import not_found
from homeserver.http.routing import ApiRequest, Router

routes = Router()


@routes.get("/thirdparty/protocols")
async def getProtocols(req: ApiRequest) -> Any:
    return {}


@routes.get("/thirdparty/protocol/{protocol}")
async def getProtocolMetadata(req: ApiRequest) -> Any:
    raise not_found("Unknown protocol")


# Lookups answer an empty list, as Synapse does without bridges.
@routes.get("/thirdparty/location/{protocol}")
async def queryLocationByProtocol(req: ApiRequest) -> Any:
    return []


@routes.get("/thirdparty/user/{protocol}")
async def queryUserByProtocol(req: ApiRequest) -> Any:
    return []


@routes.get("/thirdparty/location")
async def queryLocationByAlias(req: ApiRequest) -> Any:
    return []


@routes.get("/thirdparty/user")
async def queryUserByID(req: ApiRequest) -> Any:
    return []
