"""Pushers: set, list, replace, delete, validation, removal with the device."""

from __future__ import annotations

from typing import Any

from .helpers import auth, register

HTTP_PUSHER = {
    "kind": "http",
    "app_id": "im.vector.app.android",
    "pushkey": "token-123",
    "app_display_name": "Element",
    "device_display_name": "Phone",
    "lang": "ko-KR",
    "data": {"url": "https://push.example.org/_matrix/push/v1/notify", "format": "event_id_only"},
}


async def _set(client: Any, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/_matrix/client/v3/pushers/set", json=body, headers=auth(token))
    return resp.status, await resp.json()


async def _list(client: Any, token: str) -> list[dict[str, Any]]:
    resp = await client.get("/_matrix/client/v3/pushers", headers=auth(token))
    assert resp.status == 200
    return list((await resp.json())["pushers"])


async def add_email(client: Any, user_id: str, address: str) -> None:
    """Give the user a validated email address (admin API), as an email pusher requires."""
    admin = await register(client, admin=True)
    resp = await client.put(
        f"/_synapse/admin/v2/users/{user_id}",
        json={"threepids": [{"medium": "email", "address": address}]},
        headers=auth(admin["access_token"]),
    )
    assert resp.status == 200, await resp.text()


async def test_pusher_lifecycle(any_engine_client: Any) -> None:
    client = any_engine_client
    user = await register(client)
    token = user["access_token"]
    await add_email(client, user["user_id"], "parent@school.example")
    assert await _set(client, token, HTTP_PUSHER) == (200, {})
    pushers = await _list(client, token)
    assert (
        len(pushers) == 1
        and pushers[0]["pushkey"] == "token-123"
        and pushers[0]["data"]["format"] == "event_id_only"
    )

    assert await _set(client, token, {**HTTP_PUSHER, "device_display_name": "New phone"}) == (200, {})
    assert [p["device_display_name"] for p in await _list(client, token)] == ["New phone"]

    email = {
        **HTTP_PUSHER,
        "kind": "email",
        "app_id": "m.email",
        "pushkey": "parent@school.example",
        "data": {},
    }
    assert await _set(client, token, email) == (200, {})
    assert len(await _list(client, token)) == 2

    assert await _set(
        client, token, {"kind": None, "app_id": "m.email", "pushkey": "parent@school.example"}
    ) == (
        200,
        {},
    )
    assert len(await _list(client, token)) == 1

    # The pusher goes with the device that created it.
    resp = await client.post("/_matrix/client/v3/logout", headers=auth(token))
    assert resp.status == 200
    other = await client.post(
        "/_matrix/client/v3/login",
        json={"type": "m.login.password", "user": user["user_id"], "password": "pass-word-1"},
    )
    assert await _list(client, (await other.json())["access_token"]) == []


async def test_pusher_validation(client: Any) -> None:
    token = (await register(client))["access_token"]
    status, body = await _set(client, token, {**HTTP_PUSHER, "data": {"url": "https://push.example.org/x"}})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await _set(client, token, {k: v for k, v in HTTP_PUSHER.items() if k != "lang"})
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await _set(client, token, {**HTTP_PUSHER, "kind": "sms"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await _set(client, token, {**HTTP_PUSHER, "kind": "email", "pushkey": "not-an-email"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # An email pusher only for an address of the account (Synapse: 400 M_THREEPID_NOT_FOUND).
    status, body = await _set(
        client, token, {**HTTP_PUSHER, "kind": "email", "app_id": "m.email", "pushkey": "x@school.example"}
    )
    assert (status, body["errcode"]) == (400, "M_THREEPID_NOT_FOUND")
    assert await _list(client, token) == []


async def test_unparseable_pusher_url_is_invalid_param(any_engine_client: Any) -> None:
    """Found by the fuzzer: an unclosed IPv6 bracket made urlsplit raise, and /pushers/set 500."""
    client = any_engine_client
    token = (await register(client))["access_token"]
    for url in ("http://[::1/_matrix/push/v1/notify", "https://[nope]x/_matrix/push/v1/notify"):
        status, body = await _set(client, token, {**HTTP_PUSHER, "data": {"url": url}})
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), body
    assert await _list(client, token) == []
