"""Third-party network lookups (third_party_lookup.yaml), answered by the appservices that declare
the protocol in their registration (`protocols`), by asking them over the application-service API
(`GET {url}/_matrix/app/v1/thirdparty/...`). An appservice that does not answer is left out."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from homeserver.appservice.registry import ApplicationService
from homeserver.core.errors import not_found
from homeserver.http.routing import ApiRequest, Router

routes = Router()


def _services(req: ApiRequest, protocol: str | None) -> list[ApplicationService]:
    return [
        s
        for s in req.services.appservices.all()
        if s.url is not None and s.protocols and (protocol is None or protocol in s.protocols)
    ]


async def _protocol(req: ApiRequest, protocol: str) -> dict[str, Any] | None:
    """One protocol's metadata: the first answering appservice's, with every appservice's
    instances (each given an `instance_id` naming its appservice, as Synapse does)."""
    merged: dict[str, Any] | None = None
    instances: list[dict[str, Any]] = []
    for service in _services(req, protocol):
        info = await req.services.appservice_api.thirdparty(service, f"protocol/{quote(protocol, safe='')}")
        if not isinstance(info, dict) or not isinstance(info.get("instances", []), list):
            continue
        info = copy.deepcopy(info)
        for instance in info.get("instances", []):
            if isinstance(instance, dict):
                if isinstance(instance.get("network_id"), str):
                    instance["instance_id"] = f"{service.id}|{instance['network_id']}"
                instances.append(instance)
        if merged is None:
            merged = info
    if merged is not None:
        merged["instances"] = instances
    return merged


@routes.get("/thirdparty/protocols")
async def getProtocols(req: ApiRequest) -> Any:
    names = sorted({p for s in _services(req, None) for p in s.protocols})
    result: dict[str, Any] = {}
    for name in names:
        info = await _protocol(req, name)
        if info is not None:
            result[name] = info
    return result


@routes.get("/thirdparty/protocol/{protocol}")
async def getProtocolMetadata(req: ApiRequest) -> Any:
    info = await _protocol(req, req.path["protocol"])
    if info is None:
        raise not_found("Unknown protocol")
    return info


async def _lookup(req: ApiRequest, kind: str, protocol: str | None) -> list[Any]:
    """Concatenate the appservices' answers; fields are passed through as query parameters."""
    params = {k: v for k, v in req.query.items() if k not in ("access_token", "user_id", "device_id")}
    path = f"{kind}/{quote(protocol, safe='')}" if protocol is not None else kind
    results: list[Any] = []
    for service in _services(req, protocol):
        answer = await req.services.appservice_api.thirdparty(service, path, params)
        if isinstance(answer, list):
            results.extend(item for item in answer if isinstance(item, dict))
    return results


@routes.get("/thirdparty/location/{protocol}")
async def queryLocationByProtocol(req: ApiRequest) -> Any:
    return await _lookup(req, "location", req.path["protocol"])


@routes.get("/thirdparty/user/{protocol}")
async def queryUserByProtocol(req: ApiRequest) -> Any:
    return await _lookup(req, "user", req.path["protocol"])


@routes.get("/thirdparty/location")
async def queryLocationByAlias(req: ApiRequest) -> Any:
    return await _lookup(req, "location", None)


@routes.get("/thirdparty/user")
async def queryUserByID(req: ApiRequest) -> Any:
    return await _lookup(req, "user", None)
