"""Access and refresh token generation; tokens are stored only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets


def new_access_token() -> str:
    return "mat_" + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return "mar_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
