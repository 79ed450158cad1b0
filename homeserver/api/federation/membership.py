"""Membership handshakes with other servers (joins-v1/v2.yaml, leaving-v1/v2.yaml, knocks.yaml,
invites-v2.yaml): thin handlers over `federation/membership_server.py`."""

from __future__ import annotations

from typing import Any

from homeserver.events import constants as c
from homeserver.http.routing import ApiRequest, Auth, Router

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)
FED_V2 = ("/_matrix/federation/v2",)


async def _make(req: ApiRequest, membership: str) -> dict[str, Any]:
    versions = req.query.getall("ver", [])
    return await req.services.membership_server.make_membership(
        req.origin, req.path["roomId"], req.path["userId"], membership, list(versions) or None
    )


async def _send(req: ApiRequest, membership: str, *, omit_members: bool = False) -> dict[str, Any]:
    return await req.services.membership_server.send_membership(
        req.origin,
        req.path["roomId"],
        req.path["eventId"],
        await req.json(),
        membership,
        omit_members=omit_members,
    )


@routes.get("/make_join/{roomId}/{userId}", auth=Auth.SERVER, prefixes=FED_V1)
async def makeJoin(req: ApiRequest) -> dict[str, Any]:
    return await _make(req, c.JOIN)


@routes.put("/send_join/{roomId}/{eventId}", auth=Auth.SERVER, prefixes=FED_V2)
async def sendJoinV2(req: ApiRequest) -> dict[str, Any]:
    return await _send(req, c.JOIN, omit_members=req.query.get("omit_members") == "true")


@routes.get("/make_leave/{roomId}/{userId}", auth=Auth.SERVER, prefixes=FED_V1)
async def makeLeave(req: ApiRequest) -> dict[str, Any]:
    return await _make(req, c.LEAVE)


@routes.put("/send_leave/{roomId}/{eventId}", auth=Auth.SERVER, prefixes=FED_V2)
async def sendLeaveV2(req: ApiRequest) -> dict[str, Any]:
    return await _send(req, c.LEAVE)


@routes.get("/make_knock/{roomId}/{userId}", auth=Auth.SERVER, prefixes=FED_V1)
async def makeKnock(req: ApiRequest) -> dict[str, Any]:
    return await _make(req, c.KNOCK)


@routes.put("/send_knock/{roomId}/{eventId}", auth=Auth.SERVER, prefixes=FED_V1)
async def sendKnock(req: ApiRequest) -> dict[str, Any]:
    return await _send(req, c.KNOCK)


@routes.put("/invite/{roomId}/{eventId}", auth=Auth.SERVER, prefixes=FED_V2)
async def sendInviteV2(req: ApiRequest) -> dict[str, Any]:
    return await req.services.membership_server.on_invite(
        req.origin, req.path["roomId"], req.path["eventId"], await req.json()
    )
