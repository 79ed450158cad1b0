"""Reporting content (report_content.yaml): events, rooms and users."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import CLIENT_V3, ApiRequest, Router

routes = Router()


@routes.post("/rooms/{roomId}/report/{eventId}", ratelimit="reports")
async def reportEvent(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    await req.services.reports.report_event(req.user, req.path["roomId"], req.path["eventId"], body)
    return {}


@routes.post("/rooms/{roomId}/report", prefixes=CLIENT_V3, ratelimit="reports")
async def reportRoom(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    await req.services.reports.report_room(req.user, req.path["roomId"], body)
    return {}


@routes.post("/users/{userId}/report", prefixes=CLIENT_V3, ratelimit="reports")
async def reportUser(req: ApiRequest) -> Any:
    body = await req.json(allow_empty=False)
    await req.services.reports.report_user(req.user, req.path["userId"], body)
    return {}
