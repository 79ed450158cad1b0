"""Requests from the homeserver to appservices (the application-service API, HS -> AS).

Appservice URLs come from registration files the operator wrote, so, as in Synapse, they are not
held to the outbound IP blacklist (bridges usually run on loopback or a private network): this
client has its own session, ignores proxy settings from the environment and never follows
redirects. Every request carries the appservice's `hs_token` as a Bearer token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from homeserver.appservice.registry import ApplicationService
from homeserver.core.errors import MatrixError

logger = logging.getLogger(__name__)

APP_V1 = "/_matrix/app/v1"
QUERY_TIMEOUT = 10.0  # seconds; queries block a client request, so they must not hang
MAX_BODY = 1024 * 1024


class AppServiceUnreachable(Exception):
    """The appservice could not be asked (no URL, connection failed, timeout, bad answer)."""


@dataclass(frozen=True, slots=True)
class AppServiceResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class AppServiceApi:
    def __init__(self, timeout: float = QUERY_TIMEOUT) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        # Called with the appservice id after a successful ping: the sender retries at once.
        self.ping_hooks: list[Callable[[str], None]] = []

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                trust_env=False, headers={"User-Agent": "homeserver appservice client"}
            )
        return self._session

    async def request(
        self,
        service: ApplicationService,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        time_limit: float | None = None,
    ) -> AppServiceResponse:
        """One request to `{url}{path}`. Raises `AppServiceUnreachable` (with `TimeoutError` as
        its cause on timeout) when no answer arrives within `time_limit` seconds (default: the
        query timeout)."""
        if service.url is None:
            raise AppServiceUnreachable("no url configured")
        session = self._get_session()
        try:
            async with asyncio.timeout(self.timeout if time_limit is None else time_limit):
                async with session.request(
                    method,
                    service.url + path,
                    json=body,
                    params=params,
                    headers={"Authorization": f"Bearer {service.hs_token}"},
                    allow_redirects=False,
                ) as resp:
                    data = await resp.content.read(MAX_BODY)
                    return AppServiceResponse(resp.status, data)
        except TimeoutError as exc:
            raise AppServiceUnreachable("timed out") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise AppServiceUnreachable(f"{type(exc).__name__}: {exc}") from exc

    # -- the operations ----------------------------------------------------------------------

    async def ping(self, service: ApplicationService, transaction_id: str | None) -> int:
        """POST /ping; answers the round trip in ms, or the spec's Matrix errors."""
        if service.url is None:
            raise MatrixError(400, "M_URL_NOT_SET", "Application service doesn't have a URL configured")
        body: dict[str, Any] = {}
        if transaction_id is not None:
            body["transaction_id"] = transaction_id
        started = time.monotonic()
        try:
            resp = await self.request(service, "POST", f"{APP_V1}/ping", body=body)
        except AppServiceUnreachable as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise MatrixError(
                    504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out"
                ) from exc
            raise MatrixError(502, "M_CONNECTION_FAILED", "Connection to application service failed") from exc
        if not 200 <= resp.status < 300:
            error = MatrixError(502, "M_BAD_STATUS", f"Ping returned status {resp.status}")
            # The spec's extra fields; `status` is also MatrixError's own argument name.
            error.extra.update(status=resp.status, body=resp.body.decode("utf-8", "replace"))
            raise error
        for hook in self.ping_hooks:
            hook(service.id)
        return int((time.monotonic() - started) * 1000)

    async def query_exists(self, service: ApplicationService, kind: str, identifier: str) -> bool:
        """GET /users/{userId} or /rooms/{alias}: did the appservice create (or know) it?"""
        if service.url is None:
            return False
        try:
            resp = await self.request(service, "GET", f"{APP_V1}/{kind}/{quote(identifier, safe='')}")
        except AppServiceUnreachable as exc:
            logger.info("appservice %s: %s query for %s failed: %s", service.id, kind, identifier, exc)
            return False
        return 200 <= resp.status < 300

    async def thirdparty(
        self, service: ApplicationService, path: str, params: dict[str, str] | None = None
    ) -> Any:
        """GET /thirdparty/...: the parsed answer, or None when the appservice could not answer."""
        if service.url is None:
            return None
        try:
            resp = await self.request(service, "GET", f"{APP_V1}/thirdparty/{path}", params=params)
        except AppServiceUnreachable as exc:
            logger.info("appservice %s: thirdparty/%s failed: %s", service.id, path, exc)
            return None
        return resp.json() if resp.status == 200 else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
