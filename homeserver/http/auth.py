"""Who is asking: the one place that turns a request into a requester, by the route's `Auth` kind.

Each route declares its kind (http/routing.py); `authenticate` looks the kind up in `RESOLVERS` and
never lets a handler see a request whose credentials did not check out. Token lookups and the
appservice masquerading rules live in services/auth.py and appservice/registry.py, X-Matrix
parsing and signature checks in crypto/request_auth.py; this module only reads the HTTP request.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from homeserver.core.errors import MatrixError, missing_token
from homeserver.crypto.request_auth import verify_request
from homeserver.http.requester import Requester, ServerRequester
from homeserver.http.routing import ApiRequest, Auth


@dataclass(frozen=True, slots=True)
class Identity:
    requester: Requester | None = None
    server: ServerRequester | None = None


ANONYMOUS = Identity()


def extract_access_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header")
        return token.strip()
    # Deprecated by the spec but still sent by older clients and appservices.
    return request.query.get("access_token")


async def _user(req: ApiRequest) -> Identity:
    token = extract_access_token(req.raw)
    if token is None:
        raise missing_token()
    # `user_id` and `device_id` are the appservice masquerading parameters; user tokens ignore them.
    return Identity(
        await req.services.auth.get_requester_for_token(
            token, req.query.get("user_id"), req.query.get("device_id")
        )
    )


async def _optional(req: ApiRequest) -> Identity:
    if extract_access_token(req.raw) is None:
        return ANONYMOUS
    return await _user(req)


async def _admin(req: ApiRequest) -> Identity:
    identity = await _user(req)
    if identity.requester is None or not identity.requester.is_admin:
        raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")
    return identity


async def _appservice(req: ApiRequest) -> Identity:
    identity = await _user(req)  # an unknown token is 401 before the 403 below, as in Synapse
    if (
        identity.requester is None
        or identity.requester.app_service_id is None
        or (
            identity.requester.token_hash is not None  # a user registered by an appservice, own token
        )
    ):
        raise MatrixError(403, "M_FORBIDDEN", "Only application services can use the /appservice endpoints")
    return identity


async def _server(req: ApiRequest) -> Identity:
    request, services = req.raw, req.services
    headers = request.headers.getall("Authorization", [])
    content: dict[str, Any] | None = None
    if request.method in ("PUT", "POST"):
        # The signature covers the parsed body; like Synapse, these methods must carry a JSON object.
        content = await req.json(allow_empty=False)
    origin = await verify_request(
        services.keyring,
        server_name=services.config.server_name,
        method=request.method,
        uri=request.raw_path,
        authorization=headers,
        content=content,
        now_ms=services.clock.time_ms(),
    )
    allowed = services.config.federation_domain_whitelist
    if allowed is not None and origin not in allowed:
        raise MatrixError(403, "M_FORBIDDEN", f"Federation denied with {origin}.")
    return Identity(server=ServerRequester(origin))


async def _replication(req: ApiRequest) -> Identity:
    """The internal API between processes: `Authorization: Bearer <worker_replication_secret>`."""
    secret = req.services.config.workers.replication_secret
    if not secret:  # no workers configured: the internal API does not exist
        raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    token = extract_access_token(req.raw)
    if token is None:
        raise missing_token()
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise MatrixError(403, "M_FORBIDDEN", "Wrong worker_replication_secret")
    return ANONYMOUS


async def _none(req: ApiRequest) -> Identity:
    return ANONYMOUS


RESOLVERS: dict[Auth, Callable[[ApiRequest], Awaitable[Identity]]] = {
    Auth.NONE: _none,
    Auth.OPTIONAL: _optional,
    Auth.USER: _user,
    Auth.ADMIN: _admin,
    Auth.APPSERVICE: _appservice,
    Auth.SERVER: _server,
    Auth.REPLICATION: _replication,
}


async def authenticate(kind: Auth, req: ApiRequest) -> None:
    """Fill in `req.requester` / `req.server` for a route of auth `kind`, or raise its Matrix error."""
    identity = await RESOLVERS[kind](req)
    req.requester = identity.requester
    req.server = identity.server
