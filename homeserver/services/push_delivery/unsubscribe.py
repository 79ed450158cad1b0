"""Signed unsubscribe tokens for notification emails: the link works without logging in and names
exactly one pusher; only this server can mint one (HMAC with a key derived from its signing key)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from homeserver.core.json import dumps_str, loads


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeTokens:
    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"homeserver email unsubscribe v1\x00" + secret).digest()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:20])

    def make(self, user_id: str, app_id: str, pushkey: str) -> str:
        payload = _b64(dumps_str([user_id, app_id, pushkey]).encode())
        return f"{payload}.{self._mac(payload)}"

    def parse(self, token: str) -> tuple[str, str, str] | None:
        """The pusher the token names, or None when it is malformed or not ours."""
        payload, _, mac = token.partition(".")
        if not payload or not mac or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            value = loads(_unb64(payload))
        except ValueError:
            return None
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
            return None
        return (value[0], value[1], value[2])
