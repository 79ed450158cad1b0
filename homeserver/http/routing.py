"""Routes declare their method, path, auth kind and rate-limit class; handlers stay thin.

A handler is `async def op(req: ApiRequest) -> Any` returning a JSON-able dict (200), a
`JsonResponse`, or any aiohttp `StreamResponse` (media).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiMapping

from homeserver.core import json as hjson
from homeserver.core.errors import MatrixError, not_json
from homeserver.http.limits import read_body
from homeserver.http.requester import Requester, ServerRequester

if TYPE_CHECKING:
    from homeserver.container import Services


class Auth(enum.Enum):
    """Who may call a route; http/auth.py turns the request into the matching requester."""

    NONE = "none"  # public endpoint
    OPTIONAL = "optional"  # as USER when a token is present, anonymous otherwise
    USER = "user"  # a user's access token, or an appservice's as_token (with ?user_id= masquerading)
    ADMIN = "admin"  # as USER, and the user is a server admin
    APPSERVICE = "appservice"  # an appservice's as_token only (the appservice API on this server)
    SERVER = "server"  # another homeserver, by its X-Matrix signature (federation API)
    REPLICATION = "replication"  # a worker process, by the shared worker_replication_secret


# Path prefixes a client route is served under. r0 aliases v3 for endpoints that existed in r0.
CLIENT_V3 = ("/_matrix/client/v3",)
CLIENT_V3_R0 = ("/_matrix/client/v3", "/_matrix/client/r0")
CLIENT_V1 = ("/_matrix/client/v1",)
CLIENT_UNSTABLE = ("/_matrix/client/unstable",)


@dataclass(frozen=True)
class JsonResponse:
    body: Any
    status: int = 200
    headers: Mapping[str, str] | None = None


Handler = Callable[["ApiRequest"], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    paths: tuple[str, ...]
    handler: Handler
    auth: Auth
    ratelimit: str | None
    name: str
    # Serves the request instead when it asks for a WebSocket upgrade (sync over WebSocket); it
    # authenticates by itself, as a browser may send its token only once connected.
    websocket: Handler | None = None


@dataclass
class Router:
    routes: list[Route] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        auth: Auth = Auth.USER,
        prefixes: tuple[str, ...] = CLIENT_V3_R0,
        ratelimit: str | None = None,
        websocket: Handler | None = None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            paths = tuple(prefix + path for prefix in prefixes) if prefixes else (path,)
            self.routes.append(Route(method, paths, handler, auth, ratelimit, handler.__name__, websocket))
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)


def parse_json_body(data: bytes) -> Any:
    """Decode a request body, refusing what must never get further than the HTTP layer.

    M_NOT_JSON when it does not parse; M_BAD_JSON when it nests deeper than we can store or serve, or
    when a string (value or key) holds U+0000: PostgreSQL cannot store it, and one such event would
    fail a whole group commit. The checks cost a byte scan unless the body could hold either.
    """
    try:
        body = hjson.loads(data)
    except ValueError as exc:
        if "depth" in str(exc):  # orjson's own recursion guard (1024 levels)
            raise MatrixError(400, "M_BAD_JSON", "JSON nested too deeply") from exc
        raise not_json() from exc
    # A NUL can only be written as the escape \u0000 (raw control characters do not parse).
    if b"\\u0000" in data and hjson.contains_nul(body):
        raise MatrixError(400, "M_BAD_JSON", "Strings must not contain the NUL character (U+0000)")
    if data.count(b"[") + data.count(b"{") > hjson.MAX_JSON_DEPTH and hjson.depth_exceeds(body):
        raise MatrixError(400, "M_BAD_JSON", "JSON nested too deeply")
    return body


class ApiRequest:
    """What a handler sees: the parsed request, the requester and the services."""

    __slots__ = ("_body", "raw", "requester", "server", "services")

    def __init__(
        self,
        raw: web.Request,
        services: Services,
        requester: Requester | None,
        server: ServerRequester | None = None,
    ) -> None:
        self.raw = raw
        self.services = services
        self.requester = requester  # USER, ADMIN, APPSERVICE routes; OPTIONAL ones with a token
        self.server = server  # SERVER routes
        self._body: Any = None

    @property
    def user(self) -> Requester:
        assert self.requester is not None, "route declared without user auth"
        return self.requester

    @property
    def origin(self) -> str:
        """The verified origin server of a SERVER route."""
        assert self.server is not None, "route declared without server auth"
        return self.server.server_name

    @property
    def path(self) -> Mapping[str, str]:
        return self.raw.match_info

    @property
    def query(self) -> MultiMapping[str]:
        return self.raw.query

    @property
    def client_ip(self) -> str:
        return self.raw.remote or ""

    async def body_bytes(self) -> bytes:
        return await read_body(self.raw, self.services.config.max_request_body_size)

    async def json(self, *, allow_empty: bool = True) -> dict[str, Any]:
        """The body as a JSON object: M_NOT_JSON when unparsable, M_BAD_JSON when not an object."""
        if self._body is None:
            data = await self.body_bytes()
            if not data.strip():
                if not allow_empty:
                    raise not_json()
                self._body = {}
            else:
                self._body = parse_json_body(data)
                if not isinstance(self._body, dict):
                    raise MatrixError(400, "M_BAD_JSON", "Content must be a JSON object")
        body: dict[str, Any] = self._body
        return body
