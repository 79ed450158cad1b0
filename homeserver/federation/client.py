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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDictProxy
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
    REDIRECT_STATUSES,
    GuardedResolver,
    IPFilter,
    OutboundClient,
    OutboundError,
    _is_blocked_error,
)

logger = logging.getLogger(__name__)

MAX_RESPONSE_SIZE = 10 * 1024 * 1024
USER_AGENT = "homeserver (federation)"
ERROR_BODY_LIMIT = 64 * 1024  # an error answer to a streamed request is read up to this
STREAM_CHUNK = 256 * 1024
MAX_DOWNLOAD_REDIRECTS = 5
T = TypeVar("T")


class FederationError(Exception):
    """A federation request that did not produce a 2xx JSON answer."""

    def __init__(self, destination: str, reason: str) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.reason = reason


class RequestSendFailed(FederationError):
    """Nothing usable came back: unreachable, refused, timed out, TLS failure, bad JSON."""


class RequestTimedOut(RequestSendFailed):
    """The destination did not answer (or stopped sending) in time."""


class ResponseTooLarge(FederationError):
    """A streamed body went past its byte limit (the download is abandoned)."""


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


class _PlainOutboundClient(OutboundClient):
    """The SSRF-guarded client with the system trust store: for URLs a remote server redirects
    us to (a CDN is not a federation endpoint, `federation_custom_ca_list` does not apply)."""

    def session(self) -> aiohttp.ClientSession:
        return self._get_session()


class StreamedResponse:
    """A 2xx answer whose body is read in chunks, cut off past `max_size` bytes in total."""

    def __init__(self, source: str, resp: aiohttp.ClientResponse, max_size: int) -> None:
        self.source = source  # the destination, or the host of a redirect target
        self.status = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.max_size = max_size
        self.received = 0
        self._resp = resp

    async def chunks(self) -> AsyncIterator[bytes]:
        declared = self._resp.content_length
        if declared is not None and declared > self.max_size:
            raise ResponseTooLarge(self.source, f"the response is larger than {self.max_size} bytes")
        async for chunk in self._resp.content.iter_chunked(STREAM_CHUNK):
            self.received += len(chunk)
            if self.received > self.max_size:
                raise ResponseTooLarge(self.source, f"the response is larger than {self.max_size} bytes")
            yield chunk


def _stream_timeout(idle_timeout: float) -> aiohttp.ClientTimeout:
    # Total time is bounded by the caller's asyncio.timeout; this bounds connecting and each read.
    return aiohttp.ClientTimeout(total=None, sock_connect=idle_timeout, sock_read=idle_timeout)


async def _error_body(resp: aiohttp.ClientResponse) -> Any:
    try:
        raw = await OutboundClient._read_capped(resp, ERROR_BODY_LIMIT)
        return json.loads(raw) if raw else None
    except (OutboundError, ValueError, aiohttp.ClientError):
        return None


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
        self.redirect_http = _PlainOutboundClient(
            ip_filter, user_agent=USER_AGENT, timeout=10.0, max_redirects=MAX_DOWNLOAD_REDIRECTS
        )
        self.discovery = discovery or ServerDiscovery(
            self.fetch_well_known, clock, srv if srv is not None else default_srv_resolver()
        )

    async def close(self) -> None:
        await self.http.close()
        await self.redirect_http.close()

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
        await self._check_destination(destination, ignore_backoff)
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

    async def _check_destination(self, destination: str, ignore_backoff: bool) -> None:
        if destination == self.server_name:
            raise FederationError(destination, "refusing to send a federation request to ourselves")
        self.check_whitelist(destination)
        try:
            split_server_name(destination)
        except ValueError as exc:
            raise RequestSendFailed(destination, "invalid server name") from exc
        if not ignore_backoff:
            await self.backoff.check(destination)

    def _headers(
        self,
        address: ServerAddress,
        destination: str,
        method: str,
        uri: str,
        body: Mapping[str, Any] | None,
        signed: bool,
    ) -> dict[str, str]:
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
        return headers

    async def _resolve(self, destination: str) -> ServerAddress:
        try:
            return await self.discovery.resolve(destination)
        except ValueError as exc:
            raise RequestSendFailed(destination, str(exc)) from exc

    async def _send(
        self,
        method: str,
        destination: str,
        uri: str,
        body: Mapping[str, Any] | None,
        signed: bool,
        max_response_size: int = MAX_RESPONSE_SIZE,
    ) -> tuple[int, Any]:
        address = await self._resolve(destination)
        headers = self._headers(address, destination, method, uri, body, signed)
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

    # -- streamed downloads (remote media) ---------------------------------------------------

    async def get_streamed(
        self,
        destination: str,
        path: str,
        args: Mapping[str, str | list[str]] | None,
        consume: Callable[[StreamedResponse], Awaitable[T]],
        *,
        max_size: int,
        idle_timeout: float,
        total_timeout: float,
        ignore_backoff: bool = False,
    ) -> T:
        """A signed GET whose 2xx answer `consume` reads as a stream; returns what it returns.

        The answer must start, and keep arriving, within `idle_timeout` seconds; everything
        (`consume` included) must be done within `total_timeout`; past `max_size` bytes the body
        is cut off with ResponseTooLarge. A non-2xx answer raises RemoteHttpError. Unreachable,
        timed out (RequestTimedOut) or 5xx counts against the destination's backoff, as in
        `request`. Whatever else `consume` raises goes through unchanged.
        """
        await self._check_destination(destination, ignore_backoff)
        uri = path + ("?" + urlencode(args, doseq=True) if args else "")
        answered = False
        try:
            async with asyncio.timeout(total_timeout):
                address = await self._resolve(destination)
                headers = self._headers(address, destination, "GET", uri, None, True)
                url = URL(_base_url(address) + uri, encoded=True)
                self.http.check_url(url)
                async with self.http.session().get(
                    url,
                    headers=headers,
                    allow_redirects=False,
                    server_hostname=address.tls_hostname,
                    timeout=_stream_timeout(idle_timeout),
                ) as resp:
                    answered = True
                    if not 200 <= resp.status < 300:
                        status, body = resp.status, await _error_body(resp)
                    else:
                        await self.backoff.record_success(destination)
                        return await consume(StreamedResponse(destination, resp, max_size))
        except TimeoutError as exc:
            await self.backoff.record_failure(destination)
            raise RequestTimedOut(destination, "timed out") from exc
        except OutboundError as exc:
            await self.backoff.record_failure(destination)
            raise RequestSendFailed(destination, exc.reason) from exc
        except (aiohttp.ClientError, OSError) as exc:
            if answered and not isinstance(exc, aiohttp.ClientError):
                raise  # not the network: for example the disk `consume` writes to
            await self.backoff.record_failure(destination)
            if _is_blocked_error(exc):
                raise RequestSendFailed(destination, "IP address blocked by IP blacklist entry") from exc
            logger.info("federation GET %s to %s failed: %r", path, destination, exc)
            raise RequestSendFailed(destination, f"{type(exc).__name__}: {exc}") from exc
        if status >= 500:
            await self.backoff.record_failure(destination)
        else:
            await self.backoff.record_success(destination)
        raise RemoteHttpError(destination, status, body)

    async def get_url_streamed(
        self,
        url: str,
        consume: Callable[[StreamedResponse], Awaitable[T]],
        *,
        max_size: int,
        idle_timeout: float,
        total_timeout: float,
    ) -> T:
        """GET a URL a remote server redirected us to (a media `Location`), unsigned, through the
        SSRF guard (`ip_range_blacklist`/`whitelist` checked for every hop and connection),
        following up to 5 redirects. Same limits and errors as `get_streamed`, no backoff."""
        current = URL(url)
        source = current.host or url
        session = self.redirect_http.session()
        consuming = False
        try:
            async with asyncio.timeout(total_timeout):
                for _hop in range(MAX_DOWNLOAD_REDIRECTS + 1):
                    source = current.host or url
                    self.redirect_http.check_url(current)
                    async with session.get(
                        current, allow_redirects=False, timeout=_stream_timeout(idle_timeout)
                    ) as resp:
                        self.redirect_http._check_peer(resp)
                        if resp.status in REDIRECT_STATUSES and "Location" in resp.headers:
                            current = current.join(URL(resp.headers["Location"]))
                            continue
                        if not 200 <= resp.status < 300:
                            raise RemoteHttpError(source, resp.status, await _error_body(resp))
                        consuming = True
                        try:
                            return await consume(StreamedResponse(source, resp, max_size))
                        except aiohttp.ClientError as exc:
                            raise RequestSendFailed(source, f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise RequestTimedOut(source, "timed out") from exc
        except OutboundError as exc:
            raise RequestSendFailed(source, exc.reason) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            if consuming:
                raise  # not the network (that is RequestSendFailed by now): `consume`'s own error
            if _is_blocked_error(exc):
                raise RequestSendFailed(source, "IP address blocked by IP blacklist entry") from exc
            raise RequestSendFailed(source, f"{type(exc).__name__}: {exc}") from exc
        raise RequestSendFailed(source, "too many redirects")


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
    "RequestTimedOut",
    "ResponseTooLarge",
    "StreamedResponse",
]
