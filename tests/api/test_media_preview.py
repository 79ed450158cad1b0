"""URL previews end to end, with pages served by the test on loopback addresses: refused by
default, allowed only through `url_preview_ip_range_whitelist`, redirects re-checked per hop."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from homeserver.app import create_app_from_config

from ..conftest import make_config
from .helpers import auth, register

CAT = io.BytesIO()
Image.new("RGB", (64, 48), (1, 2, 3)).save(CAT, "PNG")
CAT_PNG = CAT.getvalue()


async def _site(app: web.Application, host: str) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.fixture
async def pages() -> AsyncIterator[dict[str, Any]]:
    """An HTML page with OpenGraph tags and its image on 127.0.0.1; a redirector on 127.0.0.2."""
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        html = """<html><head><title>ignored</title>
        <meta property="og:title" content="A cat">
        <meta property="og:description" content="The best cat">
        <meta property="og:image" content="/cat.png"></head><body>hi</body></html>"""
        return web.Response(text=html, content_type="text/html")

    async def cat(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=CAT_PNG, content_type="image/png")

    async def late_title(request: web.Request) -> web.Response:
        body = "<html><head>" + "<!-- padding -->" * 70_000 + "<title>too late</title></head></html>"
        return web.Response(text=body, content_type="text/html")

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"<p>" + b"x" * 65536)
        return resp

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/cat.png", cat)
    app.router.add_get("/late", late_title)
    app.router.add_get("/huge", huge)
    inner, inner_port = await _site(app, "127.0.0.1")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{inner_port}/page")

    outer_app = web.Application()
    outer_app.router.add_get("/redirect", redirect)
    outer, outer_port = await _site(outer_app, "127.0.0.2")
    try:
        yield {
            "page": f"http://127.0.0.1:{inner_port}/page",
            "base": f"http://127.0.0.1:{inner_port}",
            "redirect": f"http://127.0.0.2:{outer_port}/redirect",
            "hits": hits,
            "inner": inner,
        }
    finally:
        await inner.cleanup()
        await outer.cleanup()


async def _client(aiohttp_client: Any, tmp_path: Path, **extra: Any) -> Any:
    extra.setdefault("url_preview_enabled", True)
    return await aiohttp_client(create_app_from_config(make_config(tmp_path, **extra)))


async def _preview(client: Any, token: str, url: str, prefix: str = "/_matrix/client/v1/media") -> Any:
    return await client.get(f"{prefix}/preview_url", params={"url": url}, headers=auth(token))


async def _error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["errcode"]


async def test_disabled_by_default(client: Any, pages: dict[str, Any]) -> None:
    user = await register(client)
    assert await _error(await _preview(client, user["access_token"], pages["page"])) == (
        404,
        "M_UNRECOGNIZED",
    )
    assert pages["hits"] == []


async def test_loopback_refused_by_default(
    aiohttp_client: Any, tmp_path: Path, pages: dict[str, Any]
) -> None:
    client = await _client(aiohttp_client, tmp_path)
    user = await register(client)
    token = user["access_token"]
    resp = await _preview(client, token, pages["page"])
    assert await _error(resp) == (403, "M_UNKNOWN")
    assert "blacklist" in (await (await _preview(client, token, pages["page"])).json())["error"]
    localhost = pages["page"].replace("127.0.0.1", "localhost")
    assert await _error(await _preview(client, token, localhost)) == (403, "M_UNKNOWN")
    mapped = pages["page"].replace("127.0.0.1", "[::ffff:127.0.0.1]")
    assert await _error(await _preview(client, token, mapped)) == (403, "M_UNKNOWN")
    assert pages["hits"] == []  # nothing ever reached the page


async def test_allowed_by_whitelist(aiohttp_client: Any, tmp_path: Path, pages: dict[str, Any]) -> None:
    client = await _client(aiohttp_client, tmp_path, url_preview_ip_range_whitelist=["127.0.0.1"])
    user = await register(client)
    token = user["access_token"]
    resp = await _preview(client, token, pages["page"])
    og = await resp.json()
    assert resp.status == 200, og
    assert og["og:title"] == "A cat" and og["og:description"] == "The best cat"
    assert og["og:image"].startswith("mxc://test.local/")
    assert og["og:image:type"] == "image/png"
    assert og["matrix:image:size"] == len(CAT_PNG)
    assert (og["og:image:width"], og["og:image:height"]) == (64, 48)
    # The image is in the media repository.
    image = await client.get(f"/_matrix/client/v1/media/download/{og['og:image'][6:]}", headers=auth(token))
    assert image.status == 200 and await image.read() == CAT_PNG
    assert pages["hits"] == ["/page", "/cat.png"]

    # Cached: served again without fetching, even with the site gone; legacy path too.
    await pages["inner"].cleanup()
    again = await _preview(client, token, pages["page"], prefix="/_matrix/media/v3")
    assert again.status == 200 and await again.json() == og
    assert pages["hits"] == ["/page", "/cat.png"]


async def test_direct_image(aiohttp_client: Any, tmp_path: Path, pages: dict[str, Any]) -> None:
    client = await _client(aiohttp_client, tmp_path, url_preview_ip_range_whitelist=["127.0.0.1"])
    user = await register(client)
    og = await (await _preview(client, user["access_token"], pages["base"] + "/cat.png")).json()
    assert og["og:image"].startswith("mxc://") and og["matrix:image:size"] == len(CAT_PNG)
    assert "_media_id" not in og


async def test_redirect_to_blocked_address(
    aiohttp_client: Any, tmp_path: Path, pages: dict[str, Any]
) -> None:
    client = await _client(aiohttp_client, tmp_path, url_preview_ip_range_whitelist=["127.0.0.2"])
    user = await register(client)
    resp = await _preview(client, user["access_token"], pages["redirect"])
    assert await _error(resp) == (403, "M_UNKNOWN")
    assert pages["hits"] == []


async def test_limits(aiohttp_client: Any, tmp_path: Path, pages: dict[str, Any]) -> None:
    client = await _client(
        aiohttp_client, tmp_path, url_preview_ip_range_whitelist=["127.0.0.1"], max_spider_size="2M"
    )
    user = await register(client)
    token = user["access_token"]
    assert await _error(await _preview(client, token, pages["base"] + "/huge")) == (502, "M_TOO_LARGE")
    # Only the first MiB of HTML is parsed.
    og = await (await _preview(client, token, pages["base"] + "/late")).json()
    assert "og:title" not in og


async def test_bad_requests(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(
        aiohttp_client, tmp_path, url_preview_url_blacklist=[{"netloc": "*.blocked.example"}]
    )
    user = await register(client)
    token = user["access_token"]
    resp = await client.get("/_matrix/client/v1/media/preview_url", headers=auth(token))
    assert await _error(resp) == (400, "M_MISSING_PARAM")
    for url in ("ftp://example.org/", "file:///etc/passwd", "javascript:alert(1)", "not a url"):
        assert await _error(await _preview(client, token, url)) == (400, "M_INVALID_PARAM"), url
    assert await _error(await _preview(client, token, "https://www.blocked.example/x")) == (403, "M_UNKNOWN")
    assert await _error(await client.get("/_matrix/client/v1/media/preview_url?url=x")) == (
        401,
        "M_MISSING_TOKEN",
    )


async def test_rate_limited_per_user(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, rc_url_preview={"per_second": 0.01, "burst_count": 2})
    alice = await register(client)
    bob = await register(client)
    for _ in range(2):
        assert (await _preview(client, alice["access_token"], "ftp://x/")).status == 400
    assert await _error(await _preview(client, alice["access_token"], "ftp://x/")) == (
        429,
        "M_LIMIT_EXCEEDED",
    )
    assert (await _preview(client, bob["access_token"], "ftp://x/")).status == 400
