"""What every pushkin shares: app-id matching, config access, the in-flight limit, errors."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
from typing import Any, TypeVar

import aiohttp

from ..config import ConfigError
from ..metrics import INFLIGHT_LIMIT_DROPS
from ..notification import Device, Notification

T = TypeVar("T")

DEFAULT_INFLIGHT_LIMIT = 512
DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_MAX_TRIES = 3
DEFAULT_RETRY_DELAY = 10.0


class DispatchError(Exception):
    """Delivery failed for a reason that is not the pushkey's fault: the notify request gets 502."""


class TemporaryDispatchError(DispatchError):
    """A failure worth retrying (5xx, 429, timeout, connection error)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """Sygnal's app-id globs: ``*`` is any run of characters, ``?`` is one character."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile("".join(parts) + r"\Z")


def redact_pushkey(pushkey: str) -> str:
    """A pushkey is a credential for its device: logs get a short digest, enough to correlate."""
    return "pk:" + hashlib.sha256(pushkey.encode()).hexdigest()[:12]


def retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class Pushkin:
    """One configured app (``apps.<app_id>``) of some push service type."""

    kind = "base"
    understood_keys: frozenset[str] = frozenset(
        {"type", "inflight_request_limit", "request_timeout", "max_tries", "retry_delay", "max_connections"}
    )

    def __init__(self, name: str, cfg: dict[str, Any], proxy: str | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.proxy = proxy
        self.log = logging.getLogger(f"bridges.push_gateway.pushkins.{self.kind}")
        self._pattern = glob_to_regex(name)
        unknown = set(cfg) - self.understood_keys
        if unknown:
            self.log.warning("apps.%s: configuration keys not understood: %s", name, sorted(unknown))
        self.inflight_limit = self.get("inflight_request_limit", int, DEFAULT_INFLIGHT_LIMIT)
        self.request_timeout = float(self.get("request_timeout", (int, float), DEFAULT_REQUEST_TIMEOUT))
        self.max_tries = max(1, self.get("max_tries", int, DEFAULT_MAX_TRIES))
        self.retry_delay = float(self.get("retry_delay", (int, float), DEFAULT_RETRY_DELAY))
        self._inflight = 0
        self._dropped = INFLIGHT_LIMIT_DROPS.labels(pushkin=name)
        self.session: aiohttp.ClientSession | None = None

    def get(self, key: str, type_: type[T] | tuple[type, ...], default: Any = None) -> Any:
        value = self.cfg.get(key)
        if value is None:
            return default
        if not isinstance(value, type_) or (type_ is int and isinstance(value, bool)):
            name = type_.__name__ if isinstance(type_, type) else " or ".join(t.__name__ for t in type_)
            raise ConfigError(f"apps.{self.name}.{key}: expected {name}, got {type(value).__name__}")
        return value

    def require(self, key: str, type_: type[T]) -> T:
        value = self.get(key, type_)
        if value is None or value == "":
            raise ConfigError(f"apps.{self.name}.{key}: required for type {self.cfg.get('type')}")
        return value

    def handles(self, app_id: str) -> bool:
        return self.name == app_id or self._pattern.match(app_id) is not None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        ca_file = self.get("ca_file", str)
        if ca_file:
            ctx.load_verify_locations(ca_file)
        return ctx

    async def start(self) -> None:
        """Open connection pools; called once the event loop runs."""
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            connector=aiohttp.TCPConnector(
                ssl=self.ssl_context(), limit=self.get("max_connections", int, 20)
            ),
            trust_env=self.proxy is None,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def dispatch(self, n: Notification, device: Device, request_id: str) -> list[str]:
        """Deliver to one device; returns the pushkeys to reject (the homeserver drops them)."""
        if self._inflight >= self.inflight_limit:
            self._dropped.inc()
            raise DispatchError(f"too many in-flight requests for app {self.name}")
        self._inflight += 1
        try:
            return await self._dispatch_with_retries(n, device, request_id)
        finally:
            self._inflight -= 1

    async def _dispatch_with_retries(self, n: Notification, device: Device, request_id: str) -> list[str]:
        for attempt in range(self.max_tries):
            try:
                return await self.send(n, device, request_id)
            except TemporaryDispatchError as exc:
                if attempt == self.max_tries - 1:
                    raise DispatchError(f"gave up after {self.max_tries} tries: {exc}") from exc
                delay = exc.retry_after if exc.retry_after is not None else self.retry_delay * 2**attempt
                self.log.warning(
                    "[%s] temporary failure for %s (%s), retrying in %.1fs",
                    request_id,
                    redact_pushkey(device.pushkey),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def send(self, n: Notification, device: Device, request_id: str) -> list[str]:
        raise NotImplementedError

    def _post_kwargs(self) -> dict[str, Any]:
        return {"proxy": self.proxy} if self.proxy else {}
