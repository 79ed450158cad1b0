"""Shared pieces of the media handlers: streaming a `Download`, reading upload and thumbnail input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from homeserver.core.errors import MatrixError, missing_param
from homeserver.http.limits import body_chunks
from homeserver.http.middleware import CORS_HEADERS
from homeserver.http.params import query_bool, query_int
from homeserver.http.routing import ApiRequest
from homeserver.media.headers import CACHE_PRIVATE, CACHE_PUBLIC
from homeserver.media.ranges import RangeNotSatisfiable, parse_range
from homeserver.media.repository import Download

UPLOAD_CHUNK = 256 * 1024

# Legacy media paths (Synapse serves r0, v1 and v3 for all of them).
MEDIA_LEGACY = ("/_matrix/media/v3", "/_matrix/media/r0", "/_matrix/media/v1")
MEDIA_V3 = ("/_matrix/media/v3",)
MEDIA_V1 = ("/_matrix/media/v1",)


async def request_chunks(req: ApiRequest) -> AsyncIterator[bytes]:
    """The request body, chunk by chunk (aiohttp applies back-pressure while we write); a client
    that stops sending for BODY_IDLE_TIMEOUT gets 408."""
    async for chunk in body_chunks(req.raw, chunk_size=UPLOAD_CHUNK):
        yield chunk


def upload_args(req: ApiRequest) -> dict[str, Any]:
    return {
        "content_type": req.raw.headers.get("Content-Type"),
        "filename": req.query.get("filename"),
        "content_length": req.raw.content_length,
        "client_ip": req.client_ip,
    }


def timeout_ms(req: ApiRequest) -> int | None:
    return query_int(req.query, "timeout_ms", None, minimum=0)


def thumbnail_args(req: ApiRequest) -> dict[str, Any]:
    width = query_int(req.query, "width")
    height = query_int(req.query, "height")
    if width is None or height is None:
        raise MatrixError(400, "M_MISSING_PARAM", "width and height are required")
    animated = query_bool(req.query, "animated", False) if "animated" in req.query else None
    return {
        "width": width,
        "height": height,
        "method": req.query.get("method", "scale"),
        "animated": animated,
        "timeout_ms": timeout_ms(req),
    }


async def preview_url(req: ApiRequest) -> Any:
    url = req.query.get("url")
    if not url:
        raise missing_param("Missing 'url' parameter")
    return await req.services.media.previews.preview(req.user.user_id, url, query_int(req.query, "ts"))


async def stream_download(req: ApiRequest, download: Download) -> web.StreamResponse:
    """Stream the content in chunks, honouring a single byte Range (206 / 416)."""
    raw = req.raw
    headers = dict(CORS_HEADERS)
    headers.update(download.headers)
    headers["Cache-Control"] = CACHE_PRIVATE if req.requester is not None else CACHE_PUBLIC
    headers["Content-Type"] = download.media_type
    headers["Accept-Ranges"] = "bytes"
    etag = f'"{download.etag}"' if download.etag else None
    if etag:
        headers["ETag"] = etag
    if etag and raw.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
    range_header = raw.headers.get("Range")
    if_range = raw.headers.get("If-Range")
    if if_range is not None and if_range != etag:
        range_header = None  # the client's copy is stale: send it all
    size = download.length
    try:
        wanted = parse_range(range_header, size)
    except RangeNotSatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        headers.pop("Content-Type", None)
        return web.Response(status=416, headers=headers)
    if wanted is None:
        start, length, status = 0, size, 200
    else:
        start, length, status = wanted[0], wanted[1] - wanted[0] + 1, 206
        headers["Content-Range"] = f"bytes {wanted[0]}-{wanted[1]}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(raw)
    if raw.method == "HEAD":
        return response
    try:
        async for chunk in download.chunks(start, length):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; nothing to answer
    return response
