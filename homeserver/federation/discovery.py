"""Resolving a server name to where its federation API is (spec: "Resolving server names").

For `server_name` = hostname[:port]:

1. an IP literal: that address, the given port or 8448;
2. a hostname with an explicit port: that host and port;
3. otherwise `https://<hostname>/.well-known/matrix/server`; when it names a delegated
   `m.server`, steps 1–2 apply to it, then SRV `_matrix-fed._tcp.<delegated>` (and the
   deprecated `_matrix._tcp`), then `<delegated>:8448`;
4. without a usable well-known: SRV for the hostname, then `<hostname>:8448`.

The Host header is the server name (or delegated name) as found; the TLS certificate must be
valid for the hostname part of that (never for an SRV target). Well-known answers are cached
(Synapse: 48 h by default, `Cache-Control: max-age` honoured within 5 min – 48 h bounds) and
failures for an hour, so a server without one does not cost a lookup per request.

SRV lookups need a DNS library: with `aiodns` installed they are done, otherwise skipped (a
deployment relying on SRV records alone is not reachable then; `.well-known` works everywhere).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from homeserver.core.clock import Clock
from homeserver.federation.acl import is_ip_literal

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_MAX_SIZE = 50 * 1024
WELL_KNOWN_DEFAULT_TTL = 48 * 3600 * 1000
WELL_KNOWN_MIN_TTL = 5 * 60 * 1000
WELL_KNOWN_MAX_TTL = 48 * 3600 * 1000
WELL_KNOWN_FAILURE_TTL = 3600 * 1000
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where to connect for a server name, and how to present ourselves there."""

    host: str  # what to connect to: a hostname or an IP literal (IPv6 without brackets)
    port: int
    host_header: str  # the Host header: the (delegated) server name
    tls_hostname: str  # what the certificate must be valid for (hostname or IP, no brackets)


@dataclass(frozen=True, slots=True)
class WellKnownResponse:
    status: int
    body: bytes
    cache_control: str | None


# Fetches https://<hostname>/.well-known/matrix/server; None when it cannot be reached.
WellKnownFetcher = Callable[[str], Awaitable[WellKnownResponse | None]]


class SrvResolver(Protocol):
    async def resolve_srv(self, name: str) -> list[tuple[str, int]]:
        """(target, port) pairs for an SRV name in priority/weight order; [] when none."""
        ...


class AiodnsSrvResolver:
    """SRV through aiodns, when it is installed (an optional dependency)."""

    def __init__(self) -> None:
        import aiodns  # type: ignore[import-not-found,unused-ignore]

        self._resolver = aiodns.DNSResolver()

    async def resolve_srv(self, name: str) -> list[tuple[str, int]]:
        try:
            answers = await self._resolver.query(name, "SRV")
        except Exception:  # NXDOMAIN, timeouts: no SRV records
            return []
        ordered = sorted(answers, key=lambda a: (a.priority, -a.weight))
        return [(str(a.host).rstrip("."), int(a.port)) for a in ordered if str(a.host) not in ("", ".")]


def default_srv_resolver() -> SrvResolver | None:
    try:
        return AiodnsSrvResolver()
    except ImportError:
        return None


def split_server_name(server_name: str) -> tuple[str, int | None]:
    """(host, port) of a server name; IPv6 literals lose their brackets. Raises ValueError."""
    if server_name.startswith("["):
        end = server_name.find("]")
        if end < 0:
            raise ValueError(f"invalid server name {server_name!r}")
        host, rest = server_name[1:end], server_name[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid server name {server_name!r}")
        port_text = rest[1:] if rest else None
    elif ":" in server_name:
        host, port_text = server_name.rsplit(":", 1)
    else:
        host, port_text = server_name, None
    if not host:
        raise ValueError(f"invalid server name {server_name!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in server name {server_name!r}")
    return host, int(port_text)


def _parse_well_known(body: bytes) -> str | None:
    """The `m.server` of a well-known body, or None if it is not a valid delegation."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    server = parsed.get("m.server")
    if not isinstance(server, str) or not server:
        return None
    try:
        split_server_name(server)
    except ValueError:
        return None
    return server


def _ttl(cache_control: str | None) -> int:
    if cache_control:
        if "no-store" in cache_control.lower():
            return WELL_KNOWN_MIN_TTL
        match = _MAX_AGE.search(cache_control)
        if match:
            return max(WELL_KNOWN_MIN_TTL, min(WELL_KNOWN_MAX_TTL, int(match.group(1)) * 1000))
    return WELL_KNOWN_DEFAULT_TTL


class ServerDiscovery:
    def __init__(
        self,
        fetch_well_known: WellKnownFetcher,
        clock: Clock,
        srv: SrvResolver | None = None,
    ) -> None:
        self._fetch = fetch_well_known
        self._clock = clock
        self._srv = srv
        # hostname -> (delegated m.server or None, expiry ms)
        self._well_known: dict[str, tuple[str | None, int]] = {}

    async def resolve(self, server_name: str) -> ServerAddress:
        host, port = split_server_name(server_name)
        if is_ip_literal(host) or port is not None:
            return ServerAddress(host, port or DEFAULT_PORT, server_name, host)
        delegated = await self._delegation(host)
        if delegated is not None:
            d_host, d_port = split_server_name(delegated)
            if is_ip_literal(d_host) or d_port is not None:
                return ServerAddress(d_host, d_port or DEFAULT_PORT, delegated, d_host)
            return await self._srv_or_default(d_host)
        return await self._srv_or_default(host)

    async def _srv_or_default(self, host: str) -> ServerAddress:
        if self._srv is not None:
            for prefix in ("_matrix-fed._tcp.", "_matrix._tcp."):
                targets = await self._srv.resolve_srv(prefix + host)
                if targets:
                    target, port = targets[0]
                    return ServerAddress(target, port, host, host)
        return ServerAddress(host, DEFAULT_PORT, host, host)

    async def _delegation(self, hostname: str) -> str | None:
        now = self._clock.time_ms()
        cached = self._well_known.get(hostname)
        if cached is not None and cached[1] > now:
            return cached[0]
        delegated: str | None = None
        ttl = WELL_KNOWN_FAILURE_TTL
        try:
            response = await self._fetch(hostname)
        except Exception:  # the fetcher reports failures as None; be safe against surprises
            logger.warning("well-known lookup for %s failed", hostname, exc_info=True)
            response = None
        if response is not None and response.status == 200:
            delegated = _parse_well_known(response.body)
            if delegated is not None:
                ttl = _ttl(response.cache_control)
            else:
                logger.info("invalid .well-known/matrix/server for %s", hostname)
        # Jitter spreads re-fetches of many servers' well-knowns over time, as Synapse does.
        ttl = int(ttl * random.uniform(0.9, 1.0))
        self._well_known[hostname] = (delegated, now + ttl)
        return delegated
