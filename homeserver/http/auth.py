"""Access-token extraction; the lookup itself lives in services/auth.py."""

from __future__ import annotations

from aiohttp import web

from homeserver.core.errors import MatrixError


def extract_access_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header")
        return token.strip()
    # Deprecated by the spec but still sent by older clients and appservices.
    return request.query.get("access_token")
