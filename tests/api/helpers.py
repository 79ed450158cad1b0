"""Helpers for in-process API tests."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from typing import Any

SHARED_SECRET = "test-secret"
_counter = itertools.count()


async def register(
    client: Any, localpart: str | None = None, password: str = "pass-word-1", admin: bool = False
) -> dict[str, Any]:
    """Create a user through the shared-secret admin API; returns the login body."""
    localpart = localpart or f"user{next(_counter)}"
    resp = await client.get("/_synapse/admin/v1/register")
    nonce = (await resp.json())["nonce"]
    mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    mac.update(f"{nonce}\x00{localpart}\x00{password}\x00{'admin' if admin else 'notadmin'}".encode())
    resp = await client.post(
        "/_synapse/admin/v1/register",
        json={
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        },
    )
    body = await resp.json()
    assert resp.status == 200, body
    return dict(body)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
