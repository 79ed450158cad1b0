"""Outbound federation requests: discovery, X-Matrix signing, TLS trust, SSRF guard, backoff.

Every request goes to the address `ServerDiscovery` finds, with the Host header and TLS server
name of the (delegated) server name, over the shared SSRF-guarded connector (`ip_range_blacklist` /
`ip_range_whitelist`), trusting the system CAs or `federation_custom_ca_list`
(`federation_verify_certificates: false` turns checking off, for tests only). Requests to servers
outside `federation_domain_whitelist` are refused before any network traffic; a destination that
keeps failing is skipped while it backs off (`backoff.py`). Every request has a total time limit,
so an unknown or dead server never holds a client request for long.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from homeserver.config.sections import HomeserverConfig
from homeserver.core.clock import Clock
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import sign_request
from homeserver.federation.backoff import DestinationBackoff, NotRetryingDestination
from homeserver.federation.discovery import (
    WELL_KNOWN_MAX_SIZE,
    ServerAddress,
    ServerDiscovery,
    SrvResolver,
    WellKnownResponse,
    default_srv_resolver,
    split_server_name,
)
from homeserver.http.outbound import (
    GuardedResolver,
    IPFilter,
    OutboundClient,
    OutboundError,
    _is_blocked_error,
)

logger = logging.getLogger(__name__)

MAX_RESPONSE_SIZE = 10 * 1024 * 1024
USER_AGENT = "homeserver (federation)"


class FederationError(Exception):
    """A federation request that did not produce a 2xx JSON answer."""

    def __init__(self, destination: str, reason: str) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason


class RequestSendFailed(FederationError):
    """Nothing usable came back: unreachable, refused, timed out, TLS failure, bad JSON."""


class FederationDenied(FederationError):
    """The destination is not in `federation_domain_whitelist`."""


class RemoteHttpError(FederationError):
    """The remote server answered with an error status."""

    def __init__(self, destination: str, status: int, body: Any) -> None:
        errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(destination, f"HTTP {status} {errcode or ''}".strip())
        self.status = status
        self.body = body if isinstance(body, dict) else {}

    @property
    def errcode(self) -> str:
        errcode = self.body.get("errcode")
        return errcode if isinstance(errcode, str) else "M_UNKNOWN"


def build_ssl_context(config: HomeserverConfig) -> ssl.SSLContext:
    fed = config.federation
    if not fed.verify_certificates:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if fed.custom_ca_list:
        # As Synapse: the custom list replaces the system's trust store.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for path in fed.custom_ca_list:
            context.load_verify_locations(cafile=path)
        return context
    return ssl.create_default_context()


class _TlsOutboundClient(OutboundClient):
    """The SSRF-guarded client with federation's TLS trust on its connector."""

    def __init__(self, ip_filter: IPFilter, context: ssl.SSLContext, timeout: float) -> None:
        super().__init__(ip_filter, user_agent=USER_AGENT, timeout=timeout, max_redirects=5)
        self._ssl = context

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.ip_filter, self._inner_resolver),
                socket_factory=self._socket_factory,
                ssl=self._ssl,
                limit=200,
                limit_per_host=20,
                use_dns_cache=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, headers={"User-Agent": self.user_agent}
            )
        return self._session

    def session(self) -> aiohttp.ClientSession:
        return self._get_session()


class FederationClient:
    def __init__(
        self,
        config: HomeserverConfig,
        signing_key: ServerSigningKey,
        clock: Clock,
        backoff: DestinationBackoff,
        *,
        srv: SrvResolver | None = None,
        discovery: ServerDiscovery | None = None,
    ) -> None:
        self.server_name = config.server_name
        self.signing_key = signing_key
        self.clock = clock
        self.backoff = backoff
        self.default_timeout = config.federation.client_timeout / 1000
        self.domain_whitelist = (
            frozenset(config.federation_domain_whitelist)
            if config.federation_domain_whitelist is not None
            else None
        )
        ip_filter = IPFilter(config.ip_range_blacklist, config.ip_range_whitelist)
        self.http = _TlsOutboundClient(ip_filter, build_ssl_context(config), timeout=10.0)
        self.discovery = discovery or ServerDiscovery(
            self.fetch_well_known, clock, srv if srv is not None else default_srv_resolver()
        )

    async def close(self) -> None:
        await self.http.close()

    # -- discovery ---------------------------------------------------------------------------

    async def fetch_well_known(self, hostname: str) -> WellKnownResponse | None:
        host = f"[{hostname}]" if ":" in hostname else hostname
        try:
            result = await self.http.get(
                f"https://{host}/.well-known/matrix/server", max_size=WELL_KNOWN_MAX_SIZE
            )
        except OutboundError as exc:
            logger.info("no .well-known/matrix/server for %s: %s", hostname, exc.reason)
            return None
        return WellKnownResponse(result.status, result.body, result.headers.get("Cache-Control"))

    # -- requests ----------------------------------------------------------------------------

    def check_whitelist(self, destination: str) -> None:
        if self.domain_whitelist is not None and destination not in self.domain_whitelist:
            raise FederationDenied(destination, "not in federation_domain_whitelist")

    async def get_json(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | list[str]] | None = None,
        *,
        time_limit: float | None = None,
        signed: bool = True,
        ignore_backoff: bool = False,
    ) -> Any:
        return await self.request(
            "GET",
            destination,
            path,
            args,
            None,
            time_limit=time_limit,
            signed=signed,
            ignore_backoff=ignore_backoff,
        )

    async def post_json(
        self,
        destination: str,
        path: str,
        body: Mapping[str, Any],
        *,
        time_limit: float | None = None,
        signed: bool = True,
        ignore_backoff: bool = False,
    ) -> Any:
        return await self.request(
            "POST",
            destination,
            path,
            None,
            body,
            time_limit=time_limit,
            signed=signed,
            ignore_backoff=ignore_backoff,
        )

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        args: Mapping[str, str | list[str]] | None,
        body: Mapping[str, Any] | None,
        *,
        time_limit: float | None = None,
        signed: bool = True,
        ignore_backoff: bool = False,
        max_response_size: int = MAX_RESPONSE_SIZE,
    ) -> Any:
        """Send one request; `path` is already percent-encoded. Returns the parsed JSON body.

        Raises FederationDenied, NotRetryingDestination, RequestSendFailed or RemoteHttpError.
        """
        if destination == self.server_name:
            raise FederationError(destination, "refusing to send a federation request to ourselves")
        self.check_whitelist(destination)
        try:
            split_server_name(destination)
        except ValueError as exc:
            raise RequestSendFailed(destination, "invalid server name") from exc
        if not ignore_backoff:
            await self.backoff.check(destination)
        uri = path + ("?" + urlencode(args, doseq=True) if args else "")
        limit = min(time_limit or self.default_timeout, self.default_timeout)
        try:
            async with asyncio.timeout(limit):
                status, parsed = await self._send(method, destination, uri, body, signed, max_response_size)
        except TimeoutError as exc:
            await self.backoff.record_failure(destination)
            raise RequestSendFailed(destination, "timed out") from exc
        except RequestSendFailed:
            await self.backoff.record_failure(destination)
            raise
        if status >= 500:
            await self.backoff.record_failure(destination)
        else:
            await self.backoff.record_success(destination)
        if not 200 <= status < 300:
            raise RemoteHttpError(destination, status, parsed)
        if parsed is None:
            raise RequestSendFailed(destination, "the response is not JSON")
        return parsed

    async def _send(
        self,
        method: str,
        destination: str,
        uri: str,
        body: Mapping[str, Any] | None,
        signed: bool,
        max_response_size: int = MAX_RESPONSE_SIZE,
    ) -> tuple[int, Any]:
        try:
            address = await self.discovery.resolve(destination)
        except ValueError as exc:
            raise RequestSendFailed(destination, str(exc)) from exc
        headers = {"Host": address.host_header, "Content-Type": "application/json"}
        if signed:
            headers["Authorization"] = sign_request(
                self.signing_key,
                origin=self.server_name,
                destination=destination,
                method=method,
                uri=uri,
                content=body,
            )
        data = json.dumps(body).encode() if body is not None else None
        url = URL(_base_url(address) + uri, encoded=True)
        try:
            self.http.check_url(url)
            async with self.http.session().request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                server_hostname=address.tls_hostname,
            ) as resp:
                raw = await OutboundClient._read_capped(resp, max_response_size)
                status = resp.status
        except OutboundError as exc:
            raise RequestSendFailed(destination, exc.reason) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            if _is_blocked_error(exc):
                raise RequestSendFailed(destination, "IP address blocked by IP blacklist entry") from exc
            logger.info("federation %s %s to %s failed: %r", method, uri.split("?")[0], destination, exc)
            raise RequestSendFailed(destination, f"{type(exc).__name__}: {exc}") from exc
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None


def _base_url(address: ServerAddress) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"https://{host}:{address.port}"


__all__ = [
    "FederationClient",
    "FederationDenied",
    "FederationError",
    "NotRetryingDestination",
    "RemoteHttpError",
    "RequestSendFailed",
]
