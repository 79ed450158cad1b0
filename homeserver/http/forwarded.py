"""The client's address behind a reverse proxy (`x_forwarded: true` on a listener).

Each proxy appends the address it received the connection from to ``X-Forwarded-For``, so the
list reads ``client, proxy1, proxy2`` and only its right end was written by someone we trust:
anything further left may have been sent by the client itself. We therefore walk the list from the
right, skip the hops of configured `trusted_proxies`, and take the first remaining entry. Without
``X-Forwarded-For`` the proxy's ``X-Real-IP`` is used. Without `x_forwarded` both headers are
ignored: any client could send them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from homeserver.http.middleware import HandlerT

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_hop(value: str) -> IPAddress | None:
    """One X-Forwarded-For entry: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1`` or ``[2001:db8::1]:5678``."""
    value = value.strip()
    if value.startswith("["):  # bracketed IPv6, maybe with a port
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:  # IPv4 with a port (some proxies send it)
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None,
    forwarded_for: Sequence[str],
    real_ip: str | None,
    trusted: Sequence[IPNetwork] = (),
) -> str:
    """The address to attribute a request to, given the peer and the proxy's headers.

    `forwarded_for` holds every X-Forwarded-For header line (a request may carry several; they
    form one list). An unparsable right-most hop means the proxy wrote something we do not
    understand: the peer (the proxy) is used rather than a string the client may have chosen.
    """
    hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
    if hops:
        for hop in reversed(hops):
            address = parse_hop(hop)
            if address is None:
                break
            if not any(address in network for network in trusted):
                return str(address)
        else:
            # Every hop is a trusted proxy: the left-most one is the closest we get to the client.
            first = parse_hop(hops[0])
            if first is not None:
                return str(first)
    elif real_ip:
        address = parse_hop(real_ip)
        if address is not None:
            return str(address)
    return peer or ""


def forwarded_middleware(trusted_proxies: Iterable[str] = ()) -> Middleware:
    """A middleware that rewrites ``request.remote`` (and the scheme) from the proxy's headers,
    so that rate limits, logs and last-seen all see the client's address."""
    trusted = tuple(ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies)

    @web.middleware
    async def middleware(request: web.Request, handler: HandlerT) -> web.StreamResponse:
        headers = request.headers
        forwarded_for = headers.getall("X-Forwarded-For", [])
        real_ip = headers.get("X-Real-IP")
        proto = headers.get("X-Forwarded-Proto", "").strip().lower()
        if not forwarded_for and real_ip is None and proto not in ("http", "https"):
            return await handler(request)
        remote = client_address(request.remote, forwarded_for, real_ip, trusted)
        scheme = proto if proto in ("http", "https") else request.scheme
        return await handler(request.clone(remote=remote, scheme=scheme))

    return middleware
