"""The SSRF-guarded outbound client, against real local HTTP servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from homeserver.config.defaults import DEFAULT_IP_RANGE_BLACKLIST
from homeserver.http.outbound import (
    BlockedDestinationError,
    IPFilter,
    OutboundClient,
    OutboundError,
    ResponseTooLargeError,
)


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.100.100.200",
        "168.63.129.16",
        "224.0.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "64:ff9b:1::a00:1",  # RFC 8215 local-use NAT64 prefix, 10.0.0.1
        "2002:7f00:0001::1",
        "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible (deprecated) loopback
        "::10.1.2.3",
        "::169.254.169.254",
        "::ffff:10.0.0.1",
        "::ffff:0:127.0.0.1",  # SIIT IPv4-translated
        "::",
        "not-an-ip",
    ],
)
def test_blocked_addresses(ip: str) -> None:
    assert not IPFilter(DEFAULT_IP_RANGE_BLACKLIST).allows(ip)


@pytest.mark.parametrize(
    "ip",
    [
        "93.184.215.14",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:1.1.1.1",
        "::1.1.1.1",
        "64:ff9b::101:101",
        "2002:101:101::1",
    ],
)
def test_public_addresses(ip: str) -> None:
    assert IPFilter(DEFAULT_IP_RANGE_BLACKLIST).allows(ip)


def test_whitelist_exceptions() -> None:
    f = IPFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1/32", "10.0.0.0/24"])
    assert f.allows("127.0.0.1") and f.allows("::ffff:127.0.0.1") and f.allows("10.0.0.5")
    assert not f.allows("127.0.0.2") and not f.allows("10.0.1.5")
    # ...the same for the other IPv6 spellings of a whitelisted IPv4 address.
    assert f.allows("::127.0.0.1") and f.allows("64:ff9b::a00:5") and not f.allows("::10.0.1.5")
    # ::1 is IPv6 loopback (not an IPv4-compatible address): the whitelist can open it.
    assert IPFilter(DEFAULT_IP_RANGE_BLACKLIST, ["::1/128"]).allows("::1")
    # Unusable addresses stay blocked whatever the whitelist says.
    assert not IPFilter([], ["0.0.0.0/0"]).allows("0.0.0.0")
    # Metadata endpoints are blocked even with an empty blacklist, unless whitelisted.
    assert not IPFilter([]).allows("168.63.129.16")
    assert IPFilter([], ["168.63.129.16"]).allows("168.63.129.16")


class FakeResolver(AbstractResolver):
    """Answers from a fixed table, like a DNS server an attacker controls."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        ip = self.table.get(host)
        if ip is None:
            raise OSError(f"unknown host {host}")
        return [
            {
                "hostname": host,
                "host": ip,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


async def _serve(app: web.Application, host: str) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, Any]]:
    """A page on 127.0.0.1, and a redirector on 127.0.0.2 pointing at it."""
    hits: list[str] = []

    async def page(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="<title>secret</title>", content_type="text/html")

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"x" * 65536)
        return resp

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response(text="late")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    inner = web.Application()
    inner.router.add_get("/page", page)
    inner.router.add_get("/big", big)
    inner.router.add_get("/slow", slow)
    inner.router.add_get("/loop", loop)
    inner_runner, inner_port = await _serve(inner, "127.0.0.1")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{inner_port}/page")

    async def relative(request: web.Request) -> web.Response:
        raise web.HTTPFound("/final")

    async def final(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    outer = web.Application()
    outer.router.add_get("/redirect", redirect)
    outer.router.add_get("/relative", relative)
    outer.router.add_get("/final", final)
    outer_runner, outer_port = await _serve(outer, "127.0.0.2")
    try:
        yield {"inner": inner_port, "outer": outer_port, "hits": hits}
    finally:
        await inner_runner.cleanup()
        await outer_runner.cleanup()


async def _get(client: OutboundClient, url: str, max_size: int = 1 << 20) -> Any:
    try:
        return await client.get(url, max_size=max_size)
    finally:
        await client.close()


async def test_loopback_refused_by_default(servers: dict[str, Any]) -> None:
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST))
    with pytest.raises(BlockedDestinationError):
        await _get(client, f"http://127.0.0.1:{servers['inner']}/page")
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST))
    with pytest.raises(BlockedDestinationError):
        await _get(client, f"http://localhost:{servers['inner']}/page")
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST))
    with pytest.raises(BlockedDestinationError):
        await _get(client, f"http://[::ffff:127.0.0.1]:{servers['inner']}/page")
    assert servers["hits"] == []  # nothing ever reached the server


async def test_whitelisted_allowed(servers: dict[str, Any]) -> None:
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1"]))
    result = await _get(client, f"http://127.0.0.1:{servers['inner']}/page")
    assert result.status == 200 and b"secret" in result.body
    assert result.peer_ip in (None, "127.0.0.1") and result.content_type == "text/html"


async def test_redirect_to_blocked_refused(servers: dict[str, Any]) -> None:
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.2"]))
    with pytest.raises(BlockedDestinationError):
        await _get(client, f"http://127.0.0.2:{servers['outer']}/redirect")
    assert servers["hits"] == []
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.2"]))
    result = await _get(client, f"http://127.0.0.2:{servers['outer']}/relative")
    assert result.body == b"ok" and result.url.endswith("/final")


async def test_dns_rebinding_refused(servers: dict[str, Any]) -> None:
    """A public-looking name answering with a loopback address is refused at connect time."""
    resolver = FakeResolver({"innocent.example": "127.0.0.1"})
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST), resolver=resolver)
    with pytest.raises(BlockedDestinationError):
        await _get(client, f"http://innocent.example:{servers['inner']}/page")
    assert servers["hits"] == []
    # The same name is fine once the operator whitelists the address.
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1"]), resolver=resolver)
    assert (await _get(client, f"http://innocent.example:{servers['inner']}/page")).status == 200


async def test_socket_factory_checks_connected_address(servers: dict[str, Any]) -> None:
    """Even if name resolution were bypassed, the connect-time check refuses the socket."""
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST))
    with pytest.raises(OSError, match="blocked"):
        client._socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    sock = client._socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("1.1.1.1", 80)))
    sock.close()


async def test_caps(servers: dict[str, Any]) -> None:
    allow = ["127.0.0.1"]
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, allow))
    with pytest.raises(ResponseTooLargeError):
        await _get(client, f"http://127.0.0.1:{servers['inner']}/big", max_size=1_000_000)
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, allow), timeout=0.3)
    with pytest.raises(OutboundError, match="timed out"):
        await _get(client, f"http://127.0.0.1:{servers['inner']}/slow")
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, allow), max_redirects=3)
    with pytest.raises(OutboundError, match="too many redirects"):
        await _get(client, f"http://127.0.0.1:{servers['inner']}/loop")
    client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, allow))
    for url in ("ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://127.0.0.1:25/"):
        with pytest.raises(OutboundError, match="unsupported"):
            await _get(client, url)


async def test_post_json_guarded_and_never_redirected() -> None:
    """post_json (push gateways): same guard as GET; a redirect is the answer, not followed."""
    posted: list[Any] = []

    async def notify(request: web.Request) -> web.Response:
        posted.append(await request.json())
        return web.json_response({"rejected": []})

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/notify")

    app = web.Application()
    app.router.add_post("/notify", notify)
    app.router.add_post("/moved", moved)
    runner, port = await _serve(app, "127.0.0.1")
    try:
        client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST))
        with pytest.raises(BlockedDestinationError):
            await client.post_json(f"http://127.0.0.1:{port}/notify", {"a": 1}, max_size=1024)
        for url in (f"http://localhost:{port}/notify", "http://[::1/notify", "ftp://x/notify"):
            with pytest.raises(OutboundError):
                await client.post_json(url, {"a": 1}, max_size=1024)
        await client.close()
        assert posted == []

        client = OutboundClient(IPFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.1"]))
        result = await client.post_json(f"http://127.0.0.1:{port}/notify", {"a": 1}, max_size=1024)
        assert (result.status, result.body, posted) == (200, b'{"rejected": []}', [{"a": 1}])
        result = await client.post_json(f"http://127.0.0.1:{port}/moved", {"a": 2}, max_size=1024)
        assert result.status == 307 and posted == [{"a": 1}]
        with pytest.raises(ResponseTooLargeError):
            await client.post_json(f"http://127.0.0.1:{port}/notify", {"a": 3}, max_size=4)
        await client.close()
    finally:
        await runner.cleanup()
