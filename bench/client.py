"""A minimal asyncio Matrix client-server API client for the load tool (aiohttp).

It speaks only the client-server API plus Synapse's shared-secret registration admin endpoint
(`/_synapse/admin/v1/register`, nonce + HMAC-SHA1), so it runs unchanged against our server and
against Synapse. Every request has a timeout; 429s are retried a bounded number of times.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(raw: bytes) -> Any:
        return orjson.loads(raw)

except ImportError:  # pragma: no cover - orjson is a project dependency
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(raw: bytes) -> Any:
        return json.loads(raw)


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_429_RETRIES = 20
DEFAULT_TIMEOUT = 60.0


class MatrixHTTPError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        errcode = body.get("errcode") if isinstance(body, dict) else None
        msg = body.get("error") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"{method} {path} -> {status} {errcode or ''} {msg or ''}".strip())


def check_loopback(base_url: str) -> None:
    """The benchmark only ever talks to a server on this machine."""
    host = urlsplit(base_url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise SystemExit(f"refusing to load-test {base_url}: only loopback base URLs are allowed")


@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str | None
    localpart: str
    password: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class Client:
    """One aiohttp session to one homeserver; shared by all simulated users of a scenario."""

    base_url: str
    shared_secret: str
    max_connections: int = 0  # 0 = unlimited (needed for thousands of concurrent long-polls)
    session: aiohttp.ClientSession | None = None
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    requests: int = 0

    async def __aenter__(self) -> Client:
        check_loopback(self.base_url)
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=0, ttl_dns_cache=None, use_dns_cache=True
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT),
            json_serialize=lambda o: dumps(o).decode(),
            auto_decompress=True,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _note_error(self, text: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(text)

    # ----------------------------------------------------------------------------------- transport

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: User | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a per-request HTTP timeout
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        assert self.session is not None, "use `async with Client(...)`"
        url = self.base_url + path
        headers = dict(user.auth) if user else {}
        data = None
        if body is not None:
            data = dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in range(MAX_429_RETRIES + 1):
            self.requests += 1
            try:
                async with self.session.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.statuses[type(exc).__name__] += 1
                self._note_error(f"{method} {path}: {type(exc).__name__}: {exc}")
                raise
            self.statuses[str(status)] += 1
            try:
                parsed = loads(raw) if raw else None
            except ValueError:
                parsed = raw[:200].decode(errors="replace")
            if status == 429 and attempt < MAX_429_RETRIES:
                wait_ms = parsed.get("retry_after_ms", 100) if isinstance(parsed, dict) else 100
                await asyncio.sleep(min(max(wait_ms, 10), 5000) / 1000)
                continue
            if status not in ok:
                err = MatrixHTTPError(method, path, status, parsed)
                self._note_error(str(err))
                raise err
            return parsed
        raise AssertionError("unreachable")

    # --------------------------------------------------------------------------------- endpoints

    async def server_version(self) -> dict[str, Any]:
        """Best effort: federation /version (name + version), else Synapse's admin server_version."""
        for path in ("/_matrix/federation/v1/version", "/_synapse/admin/v1/server_version"):
            try:
                body = await self.request("GET", path, timeout=5)
            except (TimeoutError, MatrixHTTPError, aiohttp.ClientError):
                continue
            if isinstance(body, dict):
                if isinstance(body.get("server"), dict):
                    return dict(body["server"])
                if "server_version" in body:
                    return {"name": "?", "version": body["server_version"]}
        return {}

    async def register(self, localpart: str, password: str | None = None, admin: bool = False) -> User:
        password = password or secrets.token_hex(8)
        nonce_body = await self.request("GET", "/_synapse/admin/v1/register")
        nonce = nonce_body["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(nonce.encode() + b"\x00" + localpart.encode() + b"\x00" + password.encode())
        mac.update(b"\x00" + (b"admin" if admin else b"notadmin"))
        body = await self.request(
            "POST",
            "/_synapse/admin/v1/register",
            body={
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return User(body["user_id"], body["access_token"], body.get("device_id"), localpart, password)

    async def login(self, user: User) -> User:
        """A fresh password login: a new device and access token for the same user."""
        body = await self.request(
            "POST",
            "/_matrix/client/v3/login",
            body={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user.localpart},
                "password": user.password,
            },
        )
        return User(
            body["user_id"], body["access_token"], body.get("device_id"), user.localpart, user.password
        )

    async def register_many(self, prefix: str, count: int, concurrency: int = 8) -> list[User]:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> User:
            async with sem:
                return await self.register(f"{prefix}{i}")

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    async def create_room(self, user: User, **body: Any) -> str:
        body.setdefault("preset", "public_chat")
        res = await self.request("POST", "/_matrix/client/v3/createRoom", user=user, body=body)
        return str(res["room_id"])

    async def join(self, user: User, room: str) -> str:
        res = await self.request(
            "POST", f"/_matrix/client/v3/join/{quote(room, safe='')}", user=user, body={}
        )
        return str(res["room_id"])

    async def send_message(
        self, user: User, room_id: str, body: str, txn_id: str | None = None, **extra: Any
    ) -> str:
        txn = txn_id or uuid.uuid4().hex
        content = {"msgtype": "m.text", "body": body, **extra}
        res = await self.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/{txn}",
            user=user,
            body=content,
        )
        return str(res["event_id"])

    async def sync(
        self,
        user: User,
        *,
        since: str | None = None,
        timeout_ms: int = 0,
        filter_: str | None = None,
        full_state: bool = False,
        set_presence: str | None = "offline",
        http_timeout: float | None = None,
    ) -> dict[str, Any]:
        params: dict[str, str] = {"timeout": str(timeout_ms)}
        if since:
            params["since"] = since
        if filter_:
            params["filter"] = filter_
        if full_state:
            params["full_state"] = "true"
        if set_presence:
            params["set_presence"] = set_presence
        timeout = http_timeout if http_timeout is not None else timeout_ms / 1000 + DEFAULT_TIMEOUT
        res = await self.request("GET", "/_matrix/client/v3/sync", user=user, params=params, timeout=timeout)
        return dict(res)

    async def messages(
        self,
        user: User,
        room_id: str,
        *,
        from_: str | None = None,
        direction: str = "b",
        limit: int = 100,
        filter_: str | None = None,
    ) -> dict[str, Any]:
        params = {"dir": direction, "limit": str(limit)}
        if from_:
            params["from"] = from_
        if filter_:
            params["filter"] = filter_
        res = await self.request(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages", user=user, params=params
        )
        return dict(res)


def run_tag() -> str:
    """A short random tag so repeated runs against one server never collide on user names."""
    return secrets.token_hex(3)


def timeline_events(sync_body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = (((sync_body.get("rooms") or {}).get("join") or {}).get(room_id)) or {}
    return list((room.get("timeline") or {}).get("events") or [])


def joined_rooms(sync_body: dict[str, Any]) -> dict[str, Any]:
    return dict(((sync_body.get("rooms") or {}).get("join")) or {})


class Deadline:
    """A wall-clock budget for a bounded loop."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end
