"""Federation media (content_repository.yaml, Matrix 1.11): other servers download our media.

The answer is `multipart/mixed`: a JSON part (metadata, empty for now) then the content itself,
as the spec and Synapse send it. Only local media is served; the requesting server is
authenticated by X-Matrix like every federation request.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from homeserver.api.media.common import thumbnail_args, timeout_ms
from homeserver.http.routing import ApiRequest, Auth, Router
from homeserver.media.repository import Download

routes = Router()

FED_V1 = ("/_matrix/federation/v1",)


async def multipart_download(req: ApiRequest, download: Download) -> web.StreamResponse:
    boundary = secrets.token_hex(16)
    head = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
        f"--{boundary}\r\nContent-Type: {download.media_type}\r\n"
        f"Content-Disposition: {download.disposition}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = dict(download.headers)
    headers.pop("Content-Disposition", None)  # it belongs to the content part
    headers["Content-Type"] = f"multipart/mixed; boundary={boundary}"
    response = web.StreamResponse(status=200, headers=headers)
    response.content_length = len(head) + download.length + len(tail)
    await response.prepare(req.raw)
    try:
        await response.write(head)
        async for chunk in download.chunks():
            await response.write(chunk)
        await response.write(tail)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the other server went away
    return response


@routes.get("/media/download/{mediaId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getContent(req: ApiRequest) -> Any:
    download = await req.services.media.download(
        None, req.services.config.server_name, req.path["mediaId"], timeout_ms=timeout_ms(req)
    )
    return await multipart_download(req, download)


@routes.get("/media/thumbnail/{mediaId}", auth=Auth.SERVER, prefixes=FED_V1)
async def getContentThumbnail(req: ApiRequest) -> Any:
    download = await req.services.media.thumbnail(
        None, req.services.config.server_name, req.path["mediaId"], **thumbnail_args(req)
    )
    return await multipart_download(req, download)
