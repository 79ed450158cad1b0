"""Authenticated media (authed-content-repo.yaml, Matrix 1.11): /_matrix/client/v1/media/*."""

from __future__ import annotations

from typing import Any

from homeserver.http.routing import CLIENT_V1, ApiRequest, Auth, Router

from .common import bypass_quarantine, preview_url, stream_download, thumbnail_args, timeout_ms

routes = Router()


@routes.get("/media/config", prefixes=CLIENT_V1, auth=Auth.USER)
async def getConfigAuthed(req: ApiRequest) -> Any:
    return req.services.media.media_config()


@routes.get("/media/download/{serverName}/{mediaId}", prefixes=CLIENT_V1, auth=Auth.USER)
async def getContentAuthed(req: ApiRequest) -> Any:
    download = await req.services.media.download(
        req.user,
        req.path["serverName"],
        req.path["mediaId"],
        timeout_ms=timeout_ms(req),
        bypass_quarantine=bypass_quarantine(req),
    )
    return await stream_download(req, download)


@routes.get("/media/download/{serverName}/{mediaId}/{fileName}", prefixes=CLIENT_V1, auth=Auth.USER)
async def getContentOverrideNameAuthed(req: ApiRequest) -> Any:
    download = await req.services.media.download(
        req.user,
        req.path["serverName"],
        req.path["mediaId"],
        filename=req.path["fileName"],
        timeout_ms=timeout_ms(req),
        bypass_quarantine=bypass_quarantine(req),
    )
    return await stream_download(req, download)


@routes.get("/media/thumbnail/{serverName}/{mediaId}", prefixes=CLIENT_V1, auth=Auth.USER)
async def getContentThumbnailAuthed(req: ApiRequest) -> Any:
    download = await req.services.media.thumbnail(
        req.user, req.path["serverName"], req.path["mediaId"], **thumbnail_args(req)
    )
    return await stream_download(req, download)


@routes.get("/media/preview_url", prefixes=CLIENT_V1, auth=Auth.USER, ratelimit="url_preview")
async def getUrlPreviewAuthed(req: ApiRequest) -> Any:
    return await preview_url(req)
