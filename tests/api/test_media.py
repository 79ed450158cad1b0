"""The media repository through the in-process app: uploads, downloads, access rules, ranges,
asynchronous uploads, quotas and thumbnails."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from homeserver.app import create_app_from_config
from homeserver.core.clock import FakeClock

from ..conftest import make_config, services_of
from .helpers import auth, register


def _image(
    size: tuple[int, int], fmt: str = "PNG", color: tuple[int, int, int] = (200, 30, 30), **kw: Any
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt, **kw)
    return buf.getvalue()


PNG_BYTES = _image((1000, 800))


async def _client(aiohttp_client: Any, tmp_path: Path, **extra: Any) -> Any:
    return await aiohttp_client(create_app_from_config(make_config(tmp_path, **extra)))


async def _upload(
    client: Any, token: str, data: bytes, content_type: str | None = "image/png", filename: str | None = None
) -> str:
    headers = auth(token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    path = "/_matrix/media/v3/upload" + (f"?filename={filename}" if filename else "")
    resp = await client.post(path, data=data, headers=headers)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["content_uri"].startswith("mxc://test.local/")
    return str(body["content_uri"][len("mxc://") :])


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _listdir(path: Path) -> list[str]:
    return os.listdir(path)


async def _error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["errcode"]


# -- config, upload, download ---------------------------------------------------------------


async def test_config_endpoints(client: Any) -> None:
    user = await register(client)
    for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config", "/_matrix/media/r0/config"):
        resp = await client.get(path, headers=auth(user["access_token"]))
        assert resp.status == 200
        assert (await resp.json()) == {"m.upload.size": 50 * 1024 * 1024}
        assert await _error(await client.get(path)) == (401, "M_MISSING_TOKEN")


async def test_upload_and_download_roundtrip(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await register(client)
    bob = await register(client)
    mxc = await _upload(client, alice["access_token"], PNG_BYTES, filename="cat%20picture.png")

    resp = await client.get(f"/_matrix/client/v1/media/download/{mxc}", headers=auth(bob["access_token"]))
    assert resp.status == 200
    assert await resp.read() == PNG_BYTES
    h = resp.headers
    assert h["Content-Type"] == "image/png"
    assert h["Content-Disposition"] == 'inline; filename="cat picture.png"'
    assert h["Content-Security-Policy"].startswith("sandbox;")
    assert "default-src 'none'" in h["Content-Security-Policy"]
    assert h["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Access-Control-Allow-Origin"] == "*"
    assert h["Content-Length"] == str(len(PNG_BYTES))
    assert h["Accept-Ranges"] == "bytes"

    resp = await client.get(
        f"/_matrix/client/v1/media/download/{mxc}/other.png", headers=auth(bob["access_token"])
    )
    assert resp.headers["Content-Disposition"] == 'inline; filename="other.png"'
    # Conditional request with the ETag.
    etag = h["ETag"]
    resp = await client.get(
        f"/_matrix/client/v1/media/download/{mxc}",
        headers={**auth(bob["access_token"]), "If-None-Match": etag},
    )
    assert resp.status == 304

    # Authenticated media needs a token.
    assert await _error(await client.get(f"/_matrix/client/v1/media/download/{mxc}")) == (
        401,
        "M_MISSING_TOKEN",
    )
    # Uploaded under enable_authenticated_media: frozen on the legacy endpoint without a token.
    assert await _error(await client.get(f"/_matrix/media/v3/download/{mxc}")) == (404, "M_NOT_FOUND")
    # ...but a client sending its token there still gets it.
    resp = await client.get(f"/_matrix/media/v3/download/{mxc}", headers=auth(bob["access_token"]))
    assert resp.status == 200 and await resp.read() == PNG_BYTES


async def test_unsafe_types_are_attachments(client: Any) -> None:
    user = await register(client)
    token = user["access_token"]
    html = b"<html><script>alert(document.cookie)</script></html>"
    mxc = await _upload(client, token, html, content_type="text/html", filename="x.html")
    resp = await client.get(f"/_matrix/client/v1/media/download/{mxc}", headers=auth(token))
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="x.html"'
    assert await resp.read() == html

    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    mxc = await _upload(client, token, svg, content_type="image/svg+xml")
    resp = await client.get(f"/_matrix/client/v1/media/download/{mxc}", headers=auth(token))
    assert resp.headers["Content-Disposition"] == "attachment"

    # No Content-Type: octet-stream; unicode filename: RFC 5987 form.
    mxc = await _upload(client, token, b"\x00\x01", content_type=None, filename="%EB%AC%B8%EC%84%9C.bin")
    resp = await client.get(f"/_matrix/client/v1/media/download/{mxc}", headers=auth(token))
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Content-Disposition"] == "attachment; filename*=utf-8''%EB%AC%B8%EC%84%9C.bin"


async def test_unknown_and_invalid_media(client: Any) -> None:
    user = await register(client)
    h = auth(user["access_token"])
    for path in (
        "/_matrix/client/v1/media/download/test.local/doesnotexist",
        "/_matrix/client/v1/media/download/test.local/bad.id",
        # (remote media is fetched over federation: tests/api/test_remote_media.py)
        "/_matrix/client/v1/media/download/bad%20server/abcdef",
        "/_matrix/client/v1/media/thumbnail/test.local/doesnotexist?width=32&height=32",
    ):
        assert await _error(await client.get(path, headers=h)) == (404, "M_NOT_FOUND"), path


async def test_legacy_access_switch(aiohttp_client: Any, tmp_path: Path) -> None:
    # Media uploaded before the freeze stays on the legacy endpoints.
    client = await _client(aiohttp_client, tmp_path, enable_authenticated_media=False)
    user = await register(client)
    mxc = await _upload(client, user["access_token"], PNG_BYTES)
    for prefix in ("/_matrix/media/v3", "/_matrix/media/r0", "/_matrix/media/v1"):
        resp = await client.get(f"{prefix}/download/{mxc}")
        assert resp.status == 200 and await resp.read() == PNG_BYTES
    resp = await client.get(f"/_matrix/media/v3/thumbnail/{mxc}?width=32&height=32&method=crop")
    assert resp.status == 200

    # Legacy unauthenticated access switched off: a token is required, on both kinds of endpoint.
    other = tmp_path / "other"
    other.mkdir()
    client = await _client(
        aiohttp_client, other, allow_legacy_unauthenticated_media=False, enable_authenticated_media=False
    )
    user = await register(client)
    mxc = await _upload(client, user["access_token"], PNG_BYTES)
    for path in (
        f"/_matrix/media/v3/download/{mxc}",
        f"/_matrix/media/v3/download/{mxc}/x.png",
        f"/_matrix/media/v3/thumbnail/{mxc}?width=32&height=32",
        f"/_matrix/client/v1/media/download/{mxc}",
        f"/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32",
    ):
        assert await _error(await client.get(path)) == (401, "M_MISSING_TOKEN"), path
        resp = await client.get(path, headers=auth(user["access_token"]))
        assert resp.status == 200, path


async def test_quarantined_media_is_gone(client: Any) -> None:
    alice = await register(client)
    bob = await register(client)
    mxc = await _upload(client, alice["access_token"], PNG_BYTES)
    mxc2 = await _upload(client, alice["access_token"], b"second", content_type="text/plain")
    media = services_of(client).media
    server, media_id = mxc.split("/")
    assert await media.quarantine_media(server, media_id, alice["user_id"])
    path = f"/_matrix/client/v1/media/download/{mxc}"
    assert await _error(await client.get(path, headers=auth(bob["access_token"]))) == (404, "M_NOT_FOUND")
    thumb = f"/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32"
    assert await _error(await client.get(thumb, headers=auth(bob["access_token"]))) == (404, "M_NOT_FOUND")
    assert await media.unquarantine_media(server, media_id)
    assert (await client.get(path, headers=auth(bob["access_token"]))).status == 200
    # Protected media cannot be quarantined; quarantine by user catches the rest.
    assert await media.protect_media(server, media_id)
    assert await media.quarantine_user_media(alice["user_id"], "@admin:test.local") == 1
    assert (await client.get(path, headers=auth(bob["access_token"]))).status == 200
    path2 = f"/_matrix/client/v1/media/download/{mxc2}"
    assert (await client.get(path2, headers=auth(bob["access_token"]))).status == 404


async def test_delete_media(client: Any) -> None:
    alice = await register(client)
    h = auth(alice["access_token"])
    mxc = await _upload(client, alice["access_token"], PNG_BYTES)
    resp = await client.get(
        f"/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32&method=crop", headers=h
    )
    assert resp.status == 200
    services = services_of(client)
    storage = services.media.storage
    server, media_id = mxc.split("/")
    file_path = storage.abspath(storage.content_path(None, media_id))
    thumb_dir = storage.abspath(storage.thumbnail_dir(None, media_id))
    assert _exists(file_path) and _exists(thumb_dir)
    assert await services.media.delete_media(server, media_id)
    assert not _exists(file_path) and not _exists(thumb_dir)
    assert (await client.get(f"/_matrix/client/v1/media/download/{mxc}", headers=h)).status == 404
    await _upload(client, alice["access_token"], b"a", content_type="text/plain")
    await _upload(client, alice["access_token"], b"b", content_type="text/plain")
    assert await services.media.delete_user_media(alice["user_id"]) == 2


# -- size limits and quotas -----------------------------------------------------------------


async def test_max_upload_size(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, max_upload_size="1K")
    user = await register(client)
    h = {**auth(user["access_token"]), "Content-Type": "application/octet-stream"}
    resp = await client.get("/_matrix/client/v1/media/config", headers=auth(user["access_token"]))
    assert (await resp.json())["m.upload.size"] == 1024
    assert await _error(await client.post("/_matrix/media/v3/upload", data=b"x" * 1025, headers=h)) == (
        413,
        "M_TOO_LARGE",
    )

    async def chunked() -> Any:  # no Content-Length: caught while streaming
        for _ in range(4):
            yield b"y" * 512

    assert await _error(await client.post("/_matrix/media/v3/upload", data=chunked(), headers=h)) == (
        413,
        "M_TOO_LARGE",
    )
    tmp_dir = Path(services_of(client).media.storage.tmp_dir)
    assert not _listdir(tmp_dir)  # the partial upload was removed
    resp = await client.post("/_matrix/media/v3/upload", data=b"x" * 1024, headers=h)
    assert resp.status == 200


async def test_upload_quota(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(
        aiohttp_client, tmp_path, media_upload_limits=[{"time_period": "1d", "max_size": 1000}]
    )
    alice = await register(client)
    bob = await register(client)
    await _upload(client, alice["access_token"], b"a" * 600, content_type="text/plain")
    resp = await client.post(
        "/_matrix/media/v3/upload",
        data=b"b" * 600,
        headers={**auth(alice["access_token"]), "Content-Type": "text/plain"},
    )
    assert await _error(resp) == (403, "M_FORBIDDEN")
    await _upload(client, alice["access_token"], b"c" * 400, content_type="text/plain")
    await _upload(client, bob["access_token"], b"d" * 1000, content_type="text/plain")  # per user


# -- ranges ---------------------------------------------------------------------------------


async def test_range_requests(client: Any) -> None:
    user = await register(client)
    data = bytes(range(256)) * 40
    mxc = await _upload(client, user["access_token"], data, content_type="application/octet-stream")
    path = f"/_matrix/client/v1/media/download/{mxc}"
    h = auth(user["access_token"])
    resp = await client.get(path, headers={**h, "Range": "bytes=10-19"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert await resp.read() == data[10:20]
    resp = await client.get(path, headers={**h, "Range": "bytes=-100"})
    assert resp.status == 206 and await resp.read() == data[-100:]
    resp = await client.get(path, headers={**h, "Range": "bytes=10000-"})
    assert resp.status == 206 and await resp.read() == data[10000:]
    resp = await client.get(path, headers={**h, "Range": f"bytes={len(data)}-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(data)}"
    resp = await client.get(path, headers={**h, "Range": "bytes=0-1,5-6"})
    assert resp.status == 200 and await resp.read() == data
    # A stale If-Range gets the whole thing.
    resp = await client.get(path, headers={**h, "Range": "bytes=0-9", "If-Range": '"stale"'})
    assert resp.status == 200 and len(await resp.read()) == len(data)


# -- asynchronous uploads (/create + PUT) ---------------------------------------------------


async def test_create_then_upload(any_engine_client: Any) -> None:
    client = any_engine_client
    alice = await register(client)
    bob = await register(client)
    resp = await client.post("/_matrix/media/v1/create", headers=auth(alice["access_token"]))
    body = await resp.json()
    assert resp.status == 200, body
    assert body["content_uri"].startswith("mxc://test.local/") and body["unused_expires_at"] > 0
    mxc = body["content_uri"][len("mxc://") :]
    download = f"/_matrix/client/v1/media/download/{mxc}"

    # Not uploaded yet: 504 once the wait runs out.
    resp = await client.get(download + "?timeout_ms=0", headers=auth(bob["access_token"]))
    assert await _error(resp) == (504, "M_NOT_YET_UPLOADED")

    # Only the creator may upload.
    resp = await client.put(f"/_matrix/media/v3/upload/{mxc}", data=b"x", headers=auth(bob["access_token"]))
    assert await _error(resp) == (403, "M_FORBIDDEN")

    # A download waiting for the upload gets it as soon as it lands.
    waiting = asyncio.ensure_future(
        client.get(download + "?timeout_ms=10000", headers=auth(bob["access_token"]))
    )
    key = tuple(mxc.split("/"))
    for _ in range(10_000):  # let the download park on the upload (a few loop turns)
        if key in services_of(client).media._upload_events:
            break
        await asyncio.sleep(0)
    assert key in services_of(client).media._upload_events
    resp = await client.put(
        f"/_matrix/media/v3/upload/{mxc}?filename=late.txt",
        data=b"hello later",
        headers={**auth(alice["access_token"]), "Content-Type": "text/plain"},
    )
    assert resp.status == 200 and (await resp.json()) == {}
    resp = await waiting
    assert resp.status == 200 and await resp.read() == b"hello later"
    assert resp.headers["Content-Disposition"] == 'inline; filename="late.txt"'

    resp = await client.put(
        f"/_matrix/media/v3/upload/{mxc}", data=b"again", headers=auth(alice["access_token"])
    )
    assert await _error(resp) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    resp = await client.put(
        "/_matrix/media/v3/upload/test.local/unknownid", data=b"x", headers=auth(alice["access_token"])
    )
    assert await _error(resp) == (404, "M_NOT_FOUND")
    resp = await client.put(
        "/_matrix/media/v3/upload/other.server/abc", data=b"x", headers=auth(alice["access_token"])
    )
    assert await _error(resp) == (404, "M_NOT_FOUND")


async def test_pending_upload_limit_and_expiry(aiohttp_client: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    config = make_config(tmp_path, max_pending_media_uploads=2, unused_expiration_time="1h")
    client = await aiohttp_client(create_app_from_config(config, clock=clock))
    user = await register(client)
    h = auth(user["access_token"])
    uris = []
    for _ in range(2):
        resp = await client.post("/_matrix/media/v1/create", headers=h)
        uris.append((await resp.json())["content_uri"][len("mxc://") :])
    assert await _error(await client.post("/_matrix/media/v1/create", headers=h)) == (429, "M_LIMIT_EXCEEDED")
    clock.advance(3600 * 1000)  # the ids expire
    resp = await client.put(f"/_matrix/media/v3/upload/{uris[0]}", data=b"x", headers=h)
    assert await _error(resp) == (404, "M_NOT_FOUND")
    assert (await client.post("/_matrix/media/v1/create", headers=h)).status == 200


async def test_create_is_rate_limited(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, rc_media_create={"per_second": 0.1, "burst_count": 2})
    user = await register(client)
    h = auth(user["access_token"])
    assert (await client.post("/_matrix/media/v1/create", headers=h)).status == 200
    assert (await client.post("/_matrix/media/v1/create", headers=h)).status == 200
    assert await _error(await client.post("/_matrix/media/v1/create", headers=h)) == (429, "M_LIMIT_EXCEEDED")


# -- thumbnails -----------------------------------------------------------------------------


async def _thumb(client: Any, token: str, mxc: str, query: str) -> tuple[Any, bytes]:
    resp = await client.get(f"/_matrix/client/v1/media/thumbnail/{mxc}?{query}", headers=auth(token))
    return resp, await resp.read()


async def test_thumbnails(any_engine_client: Any) -> None:
    client = any_engine_client
    user = await register(client)
    token = user["access_token"]
    mxc = await _upload(client, token, PNG_BYTES)

    resp, data = await _thumb(client, token, mxc, "width=96&height=96&method=crop")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Disposition"] == 'inline; filename="thumbnail.png"'
    assert resp.headers["Content-Security-Policy"].startswith("sandbox;")
    assert Image.open(io.BytesIO(data)).size == (96, 96)

    resp, data = await _thumb(client, token, mxc, "width=320&height=240&method=scale")
    assert Image.open(io.BytesIO(data)).size == (300, 240)  # aspect kept
    resp, data = await _thumb(client, token, mxc, "width=500&height=400")  # scale is the default
    assert Image.open(io.BytesIO(data)).size == (600, 480)  # the 640x480 size: never smaller
    resp, data = await _thumb(client, token, mxc, "width=5000&height=5000&method=scale")
    assert Image.open(io.BytesIO(data)).size == (1000, 800)  # no upscaling: the original itself
    assert data == PNG_BYTES

    # Generated once: a repeat is served from the cache.
    media = services_of(client).media
    server, media_id = mxc.split("/")
    before = await media.store.list_thumbnails(server, media_id)
    assert len(before) == 3
    await _thumb(client, token, mxc, "width=96&height=96&method=crop")
    assert await media.store.list_thumbnails(server, media_id) == before

    # JPEG stays JPEG.
    jpeg = await _upload(client, token, _image((2000, 1500), "JPEG"), content_type="image/jpeg")
    resp, data = await _thumb(client, token, jpeg, "width=800&height=600&method=scale")
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(data)).size == (800, 600)

    # Legacy thumbnail endpoint: frozen like the download.
    resp = await client.get(f"/_matrix/media/v3/thumbnail/{mxc}?width=32&height=32")
    assert await _error(resp) == (404, "M_NOT_FOUND")


async def test_thumbnails_concurrent_generation_once(client: Any) -> None:
    user = await register(client)
    token = user["access_token"]
    mxc = await _upload(client, token, _image((3000, 2000), "JPEG"), content_type="image/jpeg")
    results = await asyncio.gather(*(_thumb(client, token, mxc, "width=640&height=480") for _ in range(8)))
    assert all(r.status == 200 for r, _ in results)
    assert len({d for _, d in results}) == 1
    server, media_id = mxc.split("/")
    assert len(await services_of(client).media.store.list_thumbnails(server, media_id)) == 1


async def test_thumbnail_exif_orientation(client: Any) -> None:
    user = await register(client)
    token = user["access_token"]
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed: a 200x400 portrait
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    mxc = await _upload(client, token, buf.getvalue(), content_type="image/jpeg")
    resp, data = await _thumb(client, token, mxc, "width=320&height=240&method=scale")
    assert resp.status == 200
    assert Image.open(io.BytesIO(data)).size == (120, 240)


async def test_thumbnail_errors(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, max_image_pixels="1M")
    user = await register(client)
    token = user["access_token"]
    # An image bomb: a few KB on disk, 9 M pixels decoded.
    buf = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buf, "PNG")
    assert len(buf.getvalue()) < 100_000
    bomb = await _upload(client, token, buf.getvalue())
    resp, _ = await _thumb(client, token, bomb, "width=32&height=32&method=crop")
    assert resp.status == 413 and (await resp.json())["errcode"] == "M_TOO_LARGE"
    # Not an image, or lying about being one.
    text = await _upload(client, token, b"just text", content_type="text/plain")
    resp, _ = await _thumb(client, token, text, "width=32&height=32")
    assert await _error(resp) == (400, "M_UNKNOWN")
    fake = await _upload(client, token, b"<html>not a png</html>", content_type="image/png")
    resp, _ = await _thumb(client, token, fake, "width=32&height=32")
    assert await _error(resp) == (400, "M_UNKNOWN")
    ok = await _upload(client, token, PNG_BYTES)
    for query, expected in (
        ("width=32", (400, "M_MISSING_PARAM")),
        ("width=abc&height=3", (400, "M_INVALID_PARAM")),
        ("width=0&height=3", (400, "M_INVALID_PARAM")),
        ("width=32&height=32&method=stretch", (400, "M_INVALID_PARAM")),
        ("width=32&height=32&animated=maybe", (400, "M_INVALID_PARAM")),
    ):
        resp, _ = await _thumb(client, token, ok, query)
        assert await _error(resp) == expected, query


async def test_animated_thumbnails(client: Any) -> None:
    user = await register(client)
    token = user["access_token"]
    frames = [Image.new("RGB", (400, 300), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    mxc = await _upload(client, token, buf.getvalue(), content_type="image/gif")

    resp, data = await _thumb(client, token, mxc, "width=96&height=96&method=crop&animated=true")
    out = Image.open(io.BytesIO(data))
    assert resp.headers["Content-Type"] == "image/webp"
    assert out.is_animated and out.n_frames == 3
    for query in ("width=96&height=96&method=crop&animated=false", "width=96&height=96&method=crop"):
        resp, data = await _thumb(client, token, mxc, query)
        out = Image.open(io.BytesIO(data))
        assert resp.headers["Content-Type"] == "image/png" and not getattr(out, "is_animated", False)
    # Smaller than requested and animation wanted: the original GIF.
    resp, data = await _thumb(client, token, mxc, "width=800&height=600&animated=true")
    assert resp.headers["Content-Type"] == "image/gif" and data == buf.getvalue()
    # ...but never an animated one when it was not asked for.
    resp, data = await _thumb(client, token, mxc, "width=800&height=600")
    assert resp.headers["Content-Type"] == "image/png"
    # animated=true on a still image behaves as false.
    still = await _upload(client, token, PNG_BYTES)
    resp, _ = await _thumb(client, token, still, "width=96&height=96&method=crop&animated=true")
    assert resp.headers["Content-Type"] == "image/png"


async def test_dynamic_thumbnails(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, dynamic_thumbnails=True)
    user = await register(client)
    mxc = await _upload(client, user["access_token"], PNG_BYTES)
    _, data = await _thumb(client, user["access_token"], mxc, "width=123&height=77&method=crop")
    assert Image.open(io.BytesIO(data)).size == (123, 77)


async def test_media_repo_disabled(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, enable_media_repo=False)
    user = await register(client)
    resp = await client.get("/_matrix/client/v1/media/config", headers=auth(user["access_token"]))
    assert await _error(resp) == (404, "M_UNRECOGNIZED")
