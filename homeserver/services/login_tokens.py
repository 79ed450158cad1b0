"""`m.login.token`: single-use, short-lived tokens that sign a device in.

Issued at the end of an SSO login (the browser brings it back to the client) and, when
`login_via_existing_session` is enabled, by a signed-in device for a new one
(`POST /login/get_token`, MSC3882). Only the token's hash is stored; it works once.
"""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.services.accounts import AccountService, LoginResult
from homeserver.services.tokens import token_hash
from homeserver.storage.stores.login_tokens import LoginTokenStore

# As Synapse: the browser hands the token straight back to the client.
SSO_LOGIN_TOKEN_LIFETIME_MS = 2 * 60 * 1000


class LoginTokens:
    def __init__(self, store: LoginTokenStore, accounts: AccountService, clock: Clock) -> None:
        self.store = store
        self.accounts = accounts
        self.clock = clock

    async def issue(
        self,
        user_id: str,
        *,
        lifetime_ms: int = SSO_LOGIN_TOKEN_LIFETIME_MS,
        auth_provider_id: str | None = None,
    ) -> str:
        token = "syl_" + secrets.token_urlsafe(32)
        now = self.clock.time_ms()
        await self.store.delete_expired(now)  # indexed; keeps the table to the live tokens
        await self.store.insert(token_hash(token), user_id, now + lifetime_ms, auth_provider_id)
        return token

    async def claim_sso_state(self, state: str, expiry_ts: int) -> bool:
        """One callback per SSO session state (see LoginTokenStore.claim_sso_state)."""
        return await self.store.claim_sso_state(state, expiry_ts, self.clock.time_ms())

    async def login(self, body: dict[str, Any]) -> LoginResult:
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing 'token'")
        row = await self.store.consume(token_hash(token), self.clock.time_ms())
        if row is None:
            raise MatrixError(403, "M_FORBIDDEN", "Invalid login token")
        user = await self.accounts.users.get_user(row.user_id)
        if user is None or user.deactivated:
            raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
        device_id = body.get("device_id")
        display_name = body.get("initial_device_display_name")
        if device_id is not None and not isinstance(device_id, str):
            raise MatrixError(400, "M_BAD_JSON", "'device_id' must be a string")
        if display_name is not None and not isinstance(display_name, str):
            raise MatrixError(400, "M_BAD_JSON", "'initial_device_display_name' must be a string")
        return await self.accounts.create_session(
            row.user_id,
            device_id,
            display_name,
            body.get("refresh_token") is True,
            login_type="m.login.token",
        )

    async def purge_expired(self) -> None:
        await self.store.delete_expired(self.clock.time_ms())
