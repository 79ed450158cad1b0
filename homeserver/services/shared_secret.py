"""Synapse's shared-secret registration: a single-use nonce, then an HMAC-SHA1 keyed with
`registration_shared_secret` over nonce, username, password, admin flag (and user type)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.services.accounts import AccountService, LoginResult
from homeserver.storage.stores.misc import NonceStore

NONCE_LIFETIME_MS = 60_000


class SharedSecretRegistration:
    def __init__(
        self, nonces: NonceStore, accounts: AccountService, clock: Clock, secret: str | None
    ) -> None:
        self.nonces = nonces
        self.accounts = accounts
        self.clock = clock
        self.secret = secret

    def check_enabled(self) -> str:
        if not self.secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        return self.secret

    async def new_nonce(self) -> str:
        self.check_enabled()
        nonce = secrets.token_hex(32)
        await self.nonces.insert_nonce(nonce, self.clock.time_ms())
        return nonce

    async def register(
        self,
        *,
        nonce: str,
        username: str,
        password: str,
        mac: str,
        admin: bool,
        user_type: str | None,
        displayname: str | None,
    ) -> LoginResult:
        secret = self.check_enabled()
        # As Synapse: the nonce is spent first, so a wrong MAC cannot be retried with it.
        if not await self.nonces.take_nonce(nonce, self.clock.time_ms() - NONCE_LIFETIME_MS):
            raise MatrixError(400, "M_UNKNOWN", "unrecognised nonce")
        want = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        want.update(nonce.encode() + b"\x00" + username.encode() + b"\x00" + password.encode())
        want.update(b"\x00" + (b"admin" if admin else b"notadmin"))
        if user_type:
            want.update(b"\x00" + user_type.encode())
        if not hmac.compare_digest(want.hexdigest(), mac):
            raise MatrixError(403, "M_FORBIDDEN", "HMAC incorrect")
        _, login = await self.accounts.register(
            username.lower(), password, admin=admin, displayname=displayname, user_type=user_type
        )
        assert login is not None  # inhibit_login is not offered here
        return login
