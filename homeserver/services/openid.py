"""OpenID tokens (client-server "OpenID", server-server "OpenID"): a user asks for a short-lived
token, gives it to another service (an integration manager, a widget host), and that service asks
this server at /_matrix/federation/v1/openid/userinfo who the token belongs to.

Tokens are valid for an hour (Synapse's lifetime), only for that exchange, and stored as digests.
"""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError, forbidden
from homeserver.http.requester import Requester
from homeserver.services.tokens import token_hash
from homeserver.storage.stores.openid import OpenIdStore

EXPIRES_IN_SECONDS = 3600


class OpenIdService:
    def __init__(self, store: OpenIdStore, clock: Clock, *, server_name: str) -> None:
        self.store = store
        self.clock = clock
        self.server_name = server_name

    async def request_token(self, requester: Requester, user_id: str) -> dict[str, Any]:
        if user_id != requester.user_id:
            raise forbidden("Cannot request tokens for other users.")
        token = secrets.token_urlsafe(32)
        now = self.clock.time_ms()
        await self.store.insert_token(token_hash(token), user_id, now + EXPIRES_IN_SECONDS * 1000, now)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": EXPIRES_IN_SECONDS,
        }

    async def userinfo(self, token: str | None) -> dict[str, Any]:
        if not token:
            raise MatrixError(401, "M_MISSING_TOKEN", "Access Token required")
        user_id = await self.store.get_user_id(token_hash(token), self.clock.time_ms())
        if user_id is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired")
        return {"sub": user_id}
