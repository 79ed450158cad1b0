"""Remote media for local clients: fetched from fake remote homeservers (aiohttp over TLS with a
throwaway CA) that check our X-Matrix signature with our real verify key.

One fake serves the authenticated federation media endpoints (multipart/mixed, optionally a
`Location` to a plain-HTTP "CDN"); another predates them (404 M_UNRECOGNIZED) and serves only the
legacy `/_matrix/media/v3/download` endpoint. Needs `openssl` for the certificates.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from homeserver.app import create_app_from_config
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.request_auth import verify_request
from homeserver.media.scanner import ScannerUnavailable, ScanVerdict
from synapse_compat_tests.launcher import free_port

from ..clients.test_federation_tls import make_ca_and_leaf
from ..conftest import make_config, services_of
from .helpers import auth, register

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def _png(width: int = 300, height: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
BLUE = _png(64, 48)


@dataclass
class FakeRemote:
    """A remote homeserver: `name` is its server name; `hits` counts requests per path kind."""

    name: str
    legacy_only: bool
    cdn_url: str
    our_keys: dict[str, Any] = field(default_factory=dict)  # our server name -> verify key
    hits: Counter[str] = field(default_factory=Counter)
    auth_failures: int = 0
    legacy_args: list[dict[str, str]] = field(default_factory=list)
    big_size: int = 0

    async def _check_auth(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        keyring = InMemoryKeyring(
            tuple(ServerVerifyKey(name, key[0], key[1], 2**62) for name, key in self.our_keys.items())
        )
        try:
            return await verify_request(
                keyring,
                server_name=self.name,
                method="GET",
                uri=request.raw_path,
                authorization=[header] if header else [],
                content=None,
                now_ms=int(time.time() * 1000),
            )
        except Exception:
            self.auth_failures += 1
            raise web.HTTPUnauthorized(
                text='{"errcode": "M_UNAUTHORIZED"}', content_type="application/json"
            ) from None

    def _content(self, media_id: str) -> tuple[bytes, str, str]:
        if media_id == "eicar":
            return EICAR, "application/octet-stream", 'attachment; filename="eicar.com"'
        if media_id == "big":
            return b"x" * self.big_size, "application/octet-stream", "attachment"
        if media_id == "blue":
            return BLUE, "image/png", "inline"
        return PNG, "image/png", 'inline; filename="cat.png"'

    async def federation_download(self, request: web.Request) -> web.StreamResponse:
        media_id = request.match_info["mediaId"]
        self.hits["federation"] += 1
        self.hits[f"federation:{media_id}"] += 1
        if self.legacy_only:
            return web.json_response(
                {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404
            )
        await self._check_auth(request)
        if media_id == "missing":
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "Not found"}, status=404)
        if media_id == "notyet":
            return web.json_response({"errcode": "M_NOT_YET_UPLOADED", "error": "Not yet"}, status=504)
        if media_id == "broken":
            return web.json_response({"errcode": "M_UNKNOWN", "error": "oops"}, status=500)
        if media_id == "slow":
            await asyncio.sleep(3)
        if media_id == "slowish":
            await asyncio.sleep(0.3)
        if media_id == "notmultipart":
            return web.Response(body=PNG, content_type="image/png")
        boundary = secrets.token_hex(8)
        head = f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n"
        if media_id in ("redirect", "redirect_blocked"):
            location = self.cdn_url if media_id == "redirect" else "http://169.254.169.254/latest/meta-data"
            body = (head + f"Location: {location}\r\n\r\n\r\n--{boundary}--\r\n").encode()
            return web.Response(body=body, headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
        content, content_type, disposition = self._content(media_id)
        response = web.StreamResponse(headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
        await response.prepare(request)
        await response.write(
            (head + f"Content-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n").encode()
        )
        for offset in range(0, len(content), 7000):  # delimiters may straddle chunks
            await response.write(content[offset : offset + 7000])
        await response.write(f"\r\n--{boundary}--\r\n".encode())
        await response.write_eof()
        return response

    async def legacy_download(self, request: web.Request) -> web.Response:
        self.hits["legacy"] += 1
        self.legacy_args.append(dict(request.query))
        if request.match_info["serverName"] != self.name:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        media_id = request.match_info["mediaId"]
        if media_id == "missing":
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "Not found"}, status=404)
        content, content_type, disposition = self._content(media_id)
        return web.Response(
            body=content, headers={"Content-Type": content_type, "Content-Disposition": disposition}
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_matrix/federation/v1/media/download/{mediaId}", self.federation_download)
        app.router.add_get("/_matrix/media/v3/download/{serverName}/{mediaId}", self.legacy_download)
        return app


@dataclass
class Remotes:
    modern: FakeRemote
    legacy: FakeRemote
    ca: Path
    cdn_hits: Counter[str]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    yield make_ca_and_leaf(tmp_path_factory.mktemp("media-certs"))


@pytest.fixture
async def remotes(certs: tuple[Path, Path, Path]) -> AsyncIterator[Remotes]:
    ca, chain, key = certs
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(chain), str(key))
    cdn_hits: Counter[str] = Counter()

    async def cdn(request: web.Request) -> web.Response:
        cdn_hits["cdn"] += 1
        return web.Response(body=PNG, headers={"Content-Type": "image/png"})

    cdn_app = web.Application()
    cdn_app.router.add_get("/file", cdn)
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application, port: int, ssl_context: ssl.SSLContext | None) -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
        runners.append(runner)

    cdn_port = free_port()
    await serve(cdn_app, cdn_port, None)
    cdn_url = f"http://127.0.0.1:{cdn_port}/file"
    fakes = []
    for legacy_only in (False, True):
        port = free_port()
        fake = FakeRemote(f"127.0.0.1:{port}", legacy_only, cdn_url)
        await serve(fake.app(), port, context)
        fakes.append(fake)
    try:
        yield Remotes(fakes[0], fakes[1], ca, cdn_hits)
    finally:
        for runner in runners:
            await runner.cleanup()


class StubScanner:
    """Stands in for clamd: anything containing the EICAR string is infected."""

    def __init__(self) -> None:
        self.scanned = 0

    async def scan(self, chunks: Any) -> ScanVerdict:
        data = b"".join([c async for c in chunks])
        self.scanned += 1
        return ScanVerdict(False, "Eicar-Test-Signature") if EICAR in data else ScanVerdict(True)


async def start(
    aiohttp_client: Any, tmp_path: Path, remotes: Remotes, pg_database: str | None = None, **extra: Any
) -> Any:
    options: dict[str, Any] = {
        "federation_custom_ca_list": [str(remotes.ca)],
        "ip_range_whitelist": ["127.0.0.0/8"],
        "trusted_key_servers": [],
    }
    options.update(extra)
    engine = ("postgres", pg_database) if pg_database else ("sqlite", None)
    client = await aiohttp_client(create_app_from_config(make_config(tmp_path, *engine, **options)))
    services = services_of(client)
    ours = (services.signing_key.key_id, services.signing_key.verify_key)
    for fake in (remotes.modern, remotes.legacy):
        fake.our_keys[services.config.server_name] = ours
    return client


async def _error(resp: Any) -> tuple[int, str]:
    return resp.status, (await resp.json())["errcode"]


def _dl(server: str, media_id: str, suffix: str = "") -> str:
    return f"/_matrix/client/v1/media/download/{server}/{media_id}{suffix}"


async def test_download_is_fetched_signed_and_cached(
    aiohttp_client: Any, tmp_path: Path, remotes: Remotes
) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    services = services_of(client)
    h = auth((await register(client))["access_token"])
    remote = remotes.modern
    resp = await client.get(_dl(remote.name, "png1"), headers=h)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == PNG
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Content-Disposition"] == 'inline; filename="cat.png"'
    assert (remote.hits["federation:png1"], remote.auth_failures) == (1, 0)

    # Cached: neither a second download, the renamed form nor thumbnails go back to the remote.
    resp = await client.get(_dl(remote.name, "png1"), headers=h)
    assert resp.status == 200 and await resp.read() == PNG
    resp = await client.get(_dl(remote.name, "png1", "/other.png"), headers=h)
    assert resp.status == 200 and resp.headers["Content-Disposition"] == 'inline; filename="other.png"'
    for method in ("scale", "crop"):
        resp = await client.get(
            f"/_matrix/client/v1/media/thumbnail/{remote.name}/png1?width=32&height=32&method={method}",
            headers=h,
        )
        assert resp.status == 200, await resp.text()
        thumb = Image.open(io.BytesIO(await resp.read()))
        assert resp.headers["Content-Type"].startswith("image/")
        assert thumb.size == (32, 32) if method == "crop" else thumb.width <= 320
    assert remote.hits["federation:png1"] == 1
    info = await services.media.store.get_media(remote.name, "png1")
    assert info is not None and info.user_id is None and info.media_length == len(PNG)
    assert info.media_type == "image/png" and info.upload_name == "cat.png" and info.authenticated
    stored = os.path.join(services.config.media_store_path, "remote_content", remote.name)
    assert any(files for _, _, files in os.walk(stored))
    thumbs = os.path.join(services.config.media_store_path, "remote_thumbnail", remote.name)
    # The crop was generated here from the cached original (the scale one is the original itself).
    assert sum(len(files) for _, _, files in os.walk(thumbs)) >= 1
    assert len(await services.media.store.list_thumbnails(remote.name, "png1")) >= 1

    # Legacy endpoints: with a token they serve it; without one it is frozen (authenticated media).
    resp = await client.get(f"/_matrix/media/v3/download/{remote.name}/png1", headers=h)
    assert resp.status == 200 and await resp.read() == PNG
    assert await _error(await client.get(f"/_matrix/media/v3/download/{remote.name}/png1")) == (
        404,
        "M_NOT_FOUND",
    )
    # ... and do not fetch for a tokenless request at all.
    assert await _error(await client.get(f"/_matrix/media/v3/download/{remote.name}/png2")) == (
        404,
        "M_NOT_FOUND",
    )
    assert remote.hits["federation:png2"] == 0


async def test_legacy_unauthenticated_fetch_when_not_frozen(
    aiohttp_client: Any, tmp_path: Path, remotes: Remotes
) -> None:
    client = await start(aiohttp_client, tmp_path, remotes, enable_authenticated_media=False)
    remote = remotes.modern
    resp = await client.get(f"/_matrix/media/v3/download/{remote.name}/png1")
    assert resp.status == 200 and await resp.read() == PNG
    resp = await client.get(f"/_matrix/media/r0/thumbnail/{remote.name}/png1?width=16&height=16")
    assert resp.status == 200
    # allow_remote=false answers from the cache only.
    resp = await client.get(f"/_matrix/media/v3/download/{remote.name}/png1?allow_remote=false")
    assert resp.status == 200
    resp = await client.get(f"/_matrix/media/v3/download/{remote.name}/other?allow_remote=false")
    assert await _error(resp) == (404, "M_NOT_FOUND")
    resp = await client.get(
        f"/_matrix/media/v3/thumbnail/{remote.name}/x?allow_remote=false&width=8&height=8"
    )
    assert await _error(resp) == (404, "M_NOT_FOUND")
    assert remote.hits["federation:other"] == remote.hits["federation:x"] == 0
    resp = await client.get(f"/_matrix/media/v3/download/{remote.name}/png1?allow_remote=maybe")
    assert await _error(resp) == (400, "M_INVALID_PARAM")


async def test_legacy_only_remote(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    h = auth((await register(client))["access_token"])
    remote = remotes.legacy
    resp = await client.get(_dl(remote.name, "png1"), headers=h)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == PNG and resp.headers["Content-Disposition"] == 'inline; filename="cat.png"'
    assert (remote.hits["federation"], remote.hits["legacy"]) == (1, 1)
    assert remote.legacy_args[0]["allow_remote"] == "false"
    resp = await client.get(_dl(remote.name, "missing"), headers=h)
    assert await _error(resp) == (404, "M_NOT_FOUND")


async def test_location_redirect(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    h = auth((await register(client))["access_token"])
    resp = await client.get(_dl(remotes.modern.name, "redirect"), headers=h)
    assert resp.status == 200, await resp.text()
    assert await resp.read() == PNG and resp.headers["Content-Type"] == "image/png"
    assert remotes.cdn_hits["cdn"] == 1


async def test_ssrf_guard(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    h = auth((await register(client))["access_token"])
    # A Location into a blocked range (the cloud metadata address) is never fetched.
    resp = await client.get(_dl(remotes.modern.name, "redirect_blocked"), headers=h)
    assert await _error(resp) == (502, "M_UNKNOWN")
    assert await services_of(client).media.store.get_media(remotes.modern.name, "redirect_blocked") is None

    # Without the loopback exception, a remote whose address is loopback is not contacted at all.
    guarded = await start(aiohttp_client, tmp_path / "guarded", remotes, ip_range_whitelist=[])
    h2 = auth((await register(guarded))["access_token"])
    before = remotes.modern.hits["federation"]
    resp = await guarded.get(_dl(remotes.modern.name, "png1"), headers=h2)
    assert await _error(resp) == (502, "M_UNKNOWN")
    assert remotes.modern.hits["federation"] == before


async def test_too_large(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes, max_upload_size=50_000)
    services = services_of(client)
    h = auth((await register(client))["access_token"])
    for fake in (remotes.modern, remotes.legacy):
        fake.big_size = 200_000
        resp = await client.get(_dl(fake.name, "big"), headers=h)
        assert await _error(resp) == (502, "M_TOO_LARGE")
        assert await services.media.store.get_media(fake.name, "big") is None
    tmp = Path(services.config.media_store_path) / "tmp"
    assert list(tmp.glob("*")) == []  # the partial downloads were discarded
    # Within the limit it is fine.
    resp = await client.get(_dl(remotes.modern.name, "png1"), headers=h)
    assert resp.status == 200


async def test_infected_remote_media(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    services = services_of(client)
    scanner = StubScanner()
    services.media.scanner = scanner  # type: ignore[assignment]
    h = auth((await register(client))["access_token"])
    remote = remotes.modern
    resp = await client.get(_dl(remote.name, "eicar"), headers=h)
    status, body = resp.status, await resp.json()
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN") and "Eicar-Test-Signature" in body["error"]
    assert await services.media.store.get_media(remote.name, "eicar") is None
    [rejection] = await services.media.store.list_scan_rejections()
    assert rejection["signature"] == "Eicar-Test-Signature" and rejection["user_id"] is None
    # Refused again without another download.
    resp = await client.get(_dl(remote.name, "eicar"), headers=h)
    assert await _error(resp) == (403, "M_FORBIDDEN")
    assert remote.hits["federation:eicar"] == 1
    # Clean media passes the scanner and is cached.
    resp = await client.get(_dl(remote.name, "png1"), headers=h)
    assert resp.status == 200 and scanner.scanned == 2

    # No verdict: fail_closed (the default) refuses the remote media and caches nothing.
    class DownScanner:
        async def scan(self, chunks: Any) -> ScanVerdict:
            raise ScannerUnavailable("clamd is down")

    services.media.scanner = DownScanner()  # type: ignore[assignment]
    resp = await client.get(_dl(remote.name, "blue"), headers=h)
    assert await _error(resp) == (503, "M_UNKNOWN")
    assert await services.media.store.get_media(remote.name, "blue") is None


async def test_concurrent_requests_fetch_once(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    h = auth((await register(client))["access_token"])
    remote = remotes.modern

    async def one() -> bytes:
        resp = await client.get(_dl(remote.name, "slowish"), headers=h)
        assert resp.status == 200
        return bytes(await resp.read())

    results = await asyncio.gather(*(one() for _ in range(6)))
    assert all(r == PNG for r in results)
    assert remote.hits["federation:slowish"] == 1


async def test_remote_errors(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    h = auth((await register(client))["access_token"])
    remote = remotes.modern
    assert await _error(await client.get(_dl(remote.name, "missing"), headers=h)) == (404, "M_NOT_FOUND")
    resp = await client.get(_dl(remote.name, "notmultipart"), headers=h)
    assert await _error(resp) == (502, "M_UNKNOWN")
    resp = await client.get(_dl(remote.name, "bad.id"), headers=h)
    assert await _error(resp) == (404, "M_NOT_FOUND")
    assert remote.hits["federation:bad.id"] == 0
    resp = await client.get(
        f"/_matrix/client/v1/media/thumbnail/{remote.name}/missing?width=8&height=8", headers=h
    )
    assert await _error(resp) == (404, "M_NOT_FOUND")
    # Passed on (a 5xx: the destination backs off after it, as in Synapse).
    resp = await client.get(_dl(remote.name, "notyet"), headers=h)
    assert await _error(resp) == (504, "M_NOT_YET_UPLOADED")
    # An unreachable server: 502 quickly, not a hang.
    resp = await client.get(_dl("127.0.0.1:1", "abc"), headers=h)
    assert await _error(resp) == (502, "M_UNKNOWN")
    # Outside federation_domain_whitelist: refused without a request.
    walled = await start(
        aiohttp_client, tmp_path / "walled", remotes, federation_domain_whitelist=["x.example"]
    )
    h2 = auth((await register(walled))["access_token"])
    before = remote.hits["federation"]
    assert await _error(await walled.get(_dl(remote.name, "png1"), headers=h2)) == (403, "M_FORBIDDEN")
    assert remote.hits["federation"] == before


async def test_timeout_and_backoff(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    h = auth((await register(client))["access_token"])
    remote = remotes.modern
    started = time.monotonic()
    resp = await client.get(_dl(remote.name, "slow", "?timeout_ms=1000"), headers=h)
    assert await _error(resp) == (504, "M_UNKNOWN")
    assert time.monotonic() - started < 2.5
    # The destination now backs off: the next request is refused without contacting it.
    before = remote.hits["federation"]
    assert await _error(await client.get(_dl(remote.name, "png1"), headers=h)) == (502, "M_UNKNOWN")
    assert remote.hits["federation"] == before
    # A 5xx counts against the destination too.
    other = await start(aiohttp_client, tmp_path / "other", remotes)
    h2 = auth((await register(other))["access_token"])
    assert await _error(await other.get(_dl(remote.name, "broken"), headers=h2)) == (502, "M_UNKNOWN")
    assert await services_of(other).destinations.get(remote.name) is not None


async def test_admin_quarantine_and_purge(aiohttp_client: Any, tmp_path: Path, remotes: Remotes) -> None:
    client = await start(aiohttp_client, tmp_path, remotes)
    services = services_of(client)
    admin = auth((await register(client, admin=True))["access_token"])
    h = auth((await register(client))["access_token"])
    remote = remotes.modern
    for media_id in ("png1", "blue"):
        assert (await client.get(_dl(remote.name, media_id), headers=h)).status == 200

    resp = await client.get(f"/_synapse/admin/v1/media/{remote.name}/png1", headers=admin)
    assert resp.status == 200
    assert (await resp.json())["media_info"]["media_origin"] == remote.name
    resp = await client.post(f"/_synapse/admin/v1/media/quarantine/{remote.name}/png1", headers=admin)
    assert resp.status == 200
    assert await _error(await client.get(_dl(remote.name, "png1"), headers=h)) == (404, "M_NOT_FOUND")

    # Purge: unused cached items go (blue); the quarantined one stays, so it stays blocked.
    later = int(time.time() * 1000) + 60_000
    resp = await client.post(f"/_synapse/admin/v1/purge_media_cache?before_ts={later}", headers=admin)
    assert (resp.status, await resp.json()) == (200, {"deleted": 1})
    assert await services.media.store.get_media(remote.name, "blue") is None
    assert await services.media.store.get_media(remote.name, "png1") is not None
    assert await _error(await client.get(_dl(remote.name, "png1"), headers=h)) == (404, "M_NOT_FOUND")
    # A purged item is fetched again on demand.
    assert remote.hits["federation:blue"] == 1
    resp = await client.get(_dl(remote.name, "blue"), headers=h)
    assert resp.status == 200 and await resp.read() == BLUE
    assert remote.hits["federation:blue"] == 2
    resp = await client.post("/_synapse/admin/v1/purge_media_cache?before_ts=1600000000000", headers=admin)
    assert (resp.status, await resp.json()) == (200, {"deleted": 0})
    resp = await client.post("/_synapse/admin/v1/purge_media_cache?before_ts=1600000000000", headers=h)
    assert resp.status == 403


async def test_cache_on_postgres(
    aiohttp_client: Any, tmp_path: Path, remotes: Remotes, pg_database: str
) -> None:
    client = await start(aiohttp_client, tmp_path, remotes, pg_database)
    services = services_of(client)
    admin = auth((await register(client, admin=True))["access_token"])
    remote = remotes.modern
    for _ in range(2):
        resp = await client.get(_dl(remote.name, "blue"), headers=admin)
        assert resp.status == 200 and await resp.read() == BLUE
    assert remote.hits["federation:blue"] == 1
    # A second insert for the same item (another worker's fetch) is refused, the first kept.
    info = await services.media.store.get_media(remote.name, "blue")
    assert info is not None
    again = await services.media.store.insert_remote_media(
        origin=remote.name,
        media_id="blue",
        media_type="image/png",
        upload_name=None,
        media_length=1,
        now_ts=1,
        sha256="x",
        filesystem_id="other",
        authenticated=True,
    )
    assert again is False
    assert await services.media.store.get_media(remote.name, "blue") == info
    later = int(time.time() * 1000) + 60_000
    resp = await client.post(f"/_synapse/admin/v1/purge_media_cache?before_ts={later}", headers=admin)
    assert (resp.status, await resp.json()) == (200, {"deleted": 1})
