"""Content repository (content-repo.yaml): uploads, /create, and the legacy /_matrix/media/* reads.

The legacy downloads and thumbnails are deprecated (Matrix 1.11) and frozen: media uploaded with
`enable_authenticated_media` on is 404 there without a token, and with
`allow_legacy_unauthenticated_media: false` they demand a token outright.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.params import query_bool
from homeserver.http.routing import ApiRequest, Auth, Router

from .common import (
    MEDIA_LEGACY,
    MEDIA_V1,
    MEDIA_V3,
    bypass_quarantine,
    preview_url,
    request_chunks,
    stream_download,
    thumbnail_args,
    timeout_ms,
    upload_args,
)

routes = Router()


def allow_remote(req: ApiRequest) -> bool:
    """`allow_remote=false`: answer from what this server has, never fetch over federation."""
    return query_bool(req.query, "allow_remote", True)


@routes.post("/upload", prefixes=MEDIA_LEGACY, auth=Auth.USER)
async def uploadContent(req: ApiRequest) -> Any:
    uri = await req.services.media.upload(req.user, request_chunks(req), **upload_args(req))
    return {"content_uri": uri}


@routes.put("/upload/{serverName}/{mediaId}", prefixes=MEDIA_V3, auth=Auth.USER)
async def uploadContentToMXC(req: ApiRequest) -> Any:
    await req.services.media.upload_to_pending(
        req.user, req.path["serverName"], req.path["mediaId"], request_chunks(req), **upload_args(req)
    )
    return {}


@routes.post("/create", prefixes=MEDIA_V1, auth=Auth.USER, ratelimit="media_create")
async def createContent(req: ApiRequest) -> Any:
    return await req.services.media.create(req.user)


@routes.get("/download/{serverName}/{mediaId}", prefixes=MEDIA_LEGACY, auth=Auth.OPTIONAL)
async def getContent(req: ApiRequest) -> Any:
    download = await req.services.media.download(
        req.requester,
        req.path["serverName"],
        req.path["mediaId"],
        legacy=True,
        timeout_ms=timeout_ms(req),
        bypass_quarantine=bypass_quarantine(req),
        allow_remote=allow_remote(req),
    )
    return await stream_download(req, download)


@routes.get("/download/{serverName}/{mediaId}/{fileName}", prefixes=MEDIA_LEGACY, auth=Auth.OPTIONAL)
async def getContentOverrideName(req: ApiRequest) -> Any:
    download = await req.services.media.download(
        req.requester,
        req.path["serverName"],
        req.path["mediaId"],
        legacy=True,
        filename=req.path["fileName"],
        timeout_ms=timeout_ms(req),
        bypass_quarantine=bypass_quarantine(req),
        allow_remote=allow_remote(req),
    )
    return await stream_download(req, download)


@routes.get("/thumbnail/{serverName}/{mediaId}", prefixes=MEDIA_LEGACY, auth=Auth.OPTIONAL)
async def getContentThumbnail(req: ApiRequest) -> Any:
    download = await req.services.media.thumbnail(
        req.requester,
        req.path["serverName"],
        req.path["mediaId"],
        legacy=True,
        allow_remote=allow_remote(req),
        **thumbnail_args(req),
    )
    return await stream_download(req, download)


@routes.get("/preview_url", prefixes=MEDIA_LEGACY, auth=Auth.USER, ratelimit="url_preview")
async def getUrlPreview(req: ApiRequest) -> Any:
    return await preview_url(req)


@routes.get("/config", prefixes=MEDIA_LEGACY, auth=Auth.USER)
async def getConfig(req: ApiRequest) -> Any:
    return req.services.media.media_config()
