"""The short-lived, signed browser session that carries an SSO login from the redirect to the
identity provider's callback (state, nonce, PKCE verifier, where the client wants to go back).

It travels in a cookie (as Synapse's `oidc_session`), so no server state is needed and any
process behind the load balancer can take the callback. HMAC-SHA256 with a key derived from the
server's signing key: only this server can make one, and it expires after ten minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from homeserver.core import json as hjson
from homeserver.core.clock import Clock

SESSION_LIFETIME_MS = 10 * 60 * 1000
COOKIE_NAME = "oidc_session"
# Set by Synapse too: browsers that drop SameSite=None cookies on the IdP's cross-site POST/redirect
# still send this one.
COOKIE_NAME_LEGACY = "oidc_session_no_samesite"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    def __init__(self, secret: bytes, clock: Clock) -> None:
        self._key = hashlib.sha256(b"homeserver oidc session\x00" + secret).digest()
        self.clock = clock

    def sign(self, data: dict[str, Any]) -> str:
        payload = _b64(hjson.dumps({**data, "exp": self.clock.time_ms() + SESSION_LIFETIME_MS}))
        mac = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{mac}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The data of a valid, unexpired session; None otherwise."""
        payload, _, mac = token.partition(".")
        expected = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, expected):
            return None
        try:
            data = hjson.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
            return None
        if data["exp"] < self.clock.time_ms():
            return None
        return data
