"""The shared outbound HTTP client, with an SSRF guard.

Every address the client connects to is checked against an IP blacklist (Synapse's
`url_preview_ip_range_blacklist` defaults: private, loopback, link-local, multicast, test
ranges, plus the cloud metadata endpoints) and an explicit whitelist of exceptions:

* names are resolved by a filtering resolver, so blocked answers are dropped before aiohttp
  ever tries them;
* the socket factory checks the address of every socket at connect time, so what is checked
  is what is connected to (no DNS-rebinding window between a check and the connect, and IP
  literals in URLs are covered too);
* redirects are followed by hand, one hop at a time, each hop going through the same checks;
* after the response head arrives, the peer address of the connection (when aiohttp still holds
  it) is checked once more, as a second line of defence.

Time (total), body size and redirect count are capped per request. Proxies from the
environment are ignored (`trust_env=False`): a proxy would hide the real destination.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from homeserver.metrics import counter

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance-metadata endpoints, blocked unless whitelisted explicitly. Most already fall in
# the default blacklist (169.254.0.0/16, fc00::/7, 100.64.0.0/10); Azure's wire server does not.
METADATA_ADDRESSES = (
    "169.254.169.254/32",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, ...
    "168.63.129.16/32",  # Azure wire server
    "100.100.100.200/32",  # Alibaba Cloud
    "fd00:ec2::254/128",  # AWS IMDS over IPv6
)
# Unusable as destinations whatever the lists say: "this network", broadcast, reserved.
ALWAYS_BLOCKED = ("0.0.0.0/8", "255.255.255.255/32", "240.0.0.0/4", "::/128")
# IPv6 forms that embed an IPv4 address in their last 32 bits, which we must check as well:
# NAT64 (RFC 6052 well-known prefix, and the RFC 8215 local-use prefix at its usual /96) and the
# deprecated IPv4-compatible ::a.b.c.d (Synapse blocks it too; some stacks still route it), and
# SIIT's IPv4-translated ::ffff:0:a.b.c.d.
_EMBED_LOW32 = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

client_requests = counter("synapse_http_client_requests", "Outbound HTTP requests (URL previews)", ["method"])
client_responses = counter("synapse_http_client_responses", "Outbound HTTP responses", ["method", "code"])


class OutboundError(Exception):
    """A fetch that failed; `reason` is safe to show to the requesting user."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class BlockedDestinationError(OutboundError):
    """The destination (or a redirect hop) resolves only to forbidden addresses."""


class ResponseTooLargeError(OutboundError):
    pass


class BlockedAddressError(OSError):
    """Raised inside the connector for a forbidden address."""


def _parse_networks(ranges: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(r, strict=False) for r in ranges]


class IPFilter:
    """An address is allowed unless it is in the blacklist and not in the whitelist.

    IPv4 addresses embedded in IPv6 ones (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``,
    NAT64, 6to4, Teredo) are checked too, so a blocked IPv4 address cannot be reached through its
    IPv6 spelling.
    """

    def __init__(
        self,
        blacklist: Iterable[str],
        whitelist: Iterable[str] = (),
        *,
        block_metadata: bool = True,
    ) -> None:
        black = list(blacklist) + list(ALWAYS_BLOCKED)
        if block_metadata:
            black += list(METADATA_ADDRESSES)
        self.blacklist = _parse_networks(black)
        self.whitelist = _parse_networks(whitelist)
        self._always = _parse_networks(ALWAYS_BLOCKED)

    @staticmethod
    def _variants(addr: IPAddress) -> list[IPAddress]:
        out: list[IPAddress] = [addr]
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None:
                out.append(addr.ipv4_mapped)
            if addr.sixtofour is not None:
                out.append(addr.sixtofour)
            if addr.teredo is not None:
                out.append(addr.teredo[1])
            # `::` and `::1` are themselves (unspecified, loopback), not IPv4-compatible spellings.
            if int(addr) > 1 and any(addr in net for net in _EMBED_LOW32):
                out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        return out

    def allows(self, ip: str | IPAddress) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
        except ValueError:
            return False
        for variant in self._variants(addr):
            if any(variant in net for net in self._always):
                return False
            if any(variant in net for net in self.blacklist) and not any(
                variant in net for net in self.whitelist
            ):
                return False
        return True


class GuardedResolver(AbstractResolver):
    """Resolves through another resolver and drops every forbidden address."""

    def __init__(self, ip_filter: IPFilter, inner: AbstractResolver | None = None) -> None:
        self.ip_filter = ip_filter
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        allowed = [r for r in results if self.ip_filter.allows(r["host"])]
        if not allowed:
            raise BlockedAddressError(f"{host} resolves only to blocked addresses")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str  # after redirects
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    peer_ip: str | None  # when aiohttp still held the connection after the response head

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


def _is_blocked_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, BlockedAddressError) or "blocked address" in str(e):
            return True
        stack.extend([e.__cause__, e.__context__, getattr(e, "os_error", None)])
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
    return False


class OutboundClient:
    """An aiohttp client session whose every connection passes the `IPFilter`."""

    def __init__(
        self,
        ip_filter: IPFilter,
        *,
        user_agent: str = "homeserver",
        timeout: float = 10.0,
        max_redirects: int = 5,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.ip_filter = ip_filter
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _socket_factory(self, addr_info: Any) -> socket.socket:
        family, type_, proto, _, address = addr_info
        if not self.ip_filter.allows(str(address[0])):
            logger.warning("outbound connection to blocked address %s refused", address[0])
            raise BlockedAddressError(f"connection to blocked address {address[0]} refused")
        return socket.socket(family=family, type=type_, proto=proto)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.ip_filter, self._inner_resolver),
                socket_factory=self._socket_factory,
                limit=100,
                limit_per_host=10,
                use_dns_cache=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                headers={"User-Agent": self.user_agent},
            )
        return self._session

    def check_url(self, url: URL) -> None:
        if url.scheme not in ("http", "https") or not url.host:
            raise OutboundError(f"unsupported URL {url.human_repr()!r}")
        host = url.host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        if not self.ip_filter.allows(host):
            raise BlockedDestinationError("IP address blocked by IP blacklist entry")

    async def get(
        self,
        url: str,
        *,
        max_size: int,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        """GET `url`, following up to `max_redirects` redirects; the body is capped at `max_size`.

        Raises BlockedDestinationError, ResponseTooLargeError or OutboundError.
        """
        try:
            async with asyncio.timeout(self.timeout):
                return await self._get(url, max_size, headers)
        except TimeoutError as exc:
            raise OutboundError("timed out fetching the URL") from exc

    async def _get(self, url: str, max_size: int, headers: Mapping[str, str] | None) -> FetchResult:
        session = self._get_session()
        current = URL(url, encoded=False)
        for _hop in range(self.max_redirects + 1):
            self.check_url(current)
            client_requests.labels("GET").inc()
            try:
                async with session.get(
                    current,
                    headers=dict(headers or {}),
                    allow_redirects=False,
                    max_line_size=16384,
                    max_field_size=16384,
                ) as resp:
                    client_responses.labels("GET", str(resp.status)).inc()
                    peer = self._check_peer(resp)
                    if resp.status in REDIRECT_STATUSES and "Location" in resp.headers:
                        location = resp.headers["Location"]
                        current = current.join(URL(location))
                        continue
                    body = await self._read_capped(resp, max_size)
                    return FetchResult(
                        str(current), resp.status, CIMultiDictProxy(CIMultiDict(resp.headers)), body, peer
                    )
            except OutboundError:
                raise
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                if _is_blocked_error(exc):
                    raise BlockedDestinationError("IP address blocked by IP blacklist entry") from exc
                raise OutboundError(f"failed to fetch the URL: {type(exc).__name__}") from exc
        raise OutboundError("too many redirects")

    async def post_json(
        self, url: str, body: Any, *, max_size: int, time_limit: float | None = None
    ) -> FetchResult:
        """POST a JSON body to `url` (no redirects: a push gateway or webhook answers itself).

        Raises BlockedDestinationError, ResponseTooLargeError or OutboundError.
        """
        try:
            target = URL(url, encoded=False)
        except ValueError as exc:
            raise OutboundError("malformed URL") from exc
        return await self._post(target, {"json": body}, max_size, time_limit)

    async def post_form(
        self,
        url: str,
        form: Mapping[str, str],
        *,
        max_size: int,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        """POST an `application/x-www-form-urlencoded` body (OAuth2 token requests); no redirects
        are followed. Raises BlockedDestinationError, ResponseTooLargeError or OutboundError."""
        target = URL(url, encoded=False)
        return await self._post(target, {"data": dict(form), "headers": dict(headers or {})}, max_size, None)

    async def _post(
        self, target: URL, payload: dict[str, Any], max_size: int, time_limit: float | None
    ) -> FetchResult:
        """One POST through the IP filter, no redirects, the answer capped at `max_size`."""
        self.check_url(target)
        client_requests.labels("POST").inc()
        try:
            async with asyncio.timeout(time_limit if time_limit is not None else self.timeout):
                async with self._get_session().post(target, allow_redirects=False, **payload) as resp:
                    client_responses.labels("POST", str(resp.status)).inc()
                    peer = self._check_peer(resp)
                    data = await self._read_capped(resp, max_size)
                    return FetchResult(
                        str(target), resp.status, CIMultiDictProxy(CIMultiDict(resp.headers)), data, peer
                    )
        except TimeoutError as exc:
            raise OutboundError("timed out") from exc
        except OutboundError:
            raise
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            if _is_blocked_error(exc):
                raise BlockedDestinationError("IP address blocked by IP blacklist entry") from exc
            raise OutboundError(f"request failed: {type(exc).__name__}") from exc

    def _check_peer(self, resp: aiohttp.ClientResponse) -> str | None:
        connection = resp.connection
        transport = connection.transport if connection is not None else None
        peer = transport.get_extra_info("peername") if transport is not None else None
        if not peer:
            return None
        ip = str(peer[0])
        if not self.ip_filter.allows(ip):
            raise BlockedDestinationError("IP address blocked by IP blacklist entry")
        return ip

    @staticmethod
    async def _read_capped(resp: aiohttp.ClientResponse, max_size: int) -> bytes:
        declared = resp.content_length
        if declared is not None and declared > max_size:
            raise ResponseTooLargeError("the response is too large", status=resp.status)
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.content.iter_chunked(65536):
            total += len(chunk)
            if total > max_size:
                raise ResponseTooLargeError("the response is too large", status=resp.status)
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
