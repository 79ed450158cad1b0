"""Accounts end to end through the in-process app, on both engines."""

from __future__ import annotations

from typing import Any

from .helpers import auth, register


async def test_versions_and_cors(client: Any) -> None:
    resp = await client.get("/_matrix/client/versions")
    assert resp.status == 200
    body = await resp.json()
    assert "v1.1" in body["versions"]
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.options("/_matrix/client/v3/account/whoami")
    assert resp.status == 200
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]


async def test_register_login_whoami_logout(any_engine_client: Any) -> None:
    client = any_engine_client
    resp = await client.post("/_matrix/client/v3/register", json={"username": "alice", "password": "pw"})
    assert resp.status == 401
    challenge = await resp.json()
    assert challenge["flows"] == [{"stages": ["m.login.dummy"]}]
    resp = await client.post(
        "/_matrix/client/v3/register",
        json={"auth": {"type": "m.login.dummy", "session": challenge["session"]}},
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["user_id"] == "@alice:test.local"

    resp = await client.post(
        "/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": "pw",
        },
    )
    login = await resp.json()
    assert resp.status == 200, login
    resp = await client.get("/_matrix/client/r0/account/whoami", headers=auth(login["access_token"]))
    assert (await resp.json())["device_id"] == login["device_id"]

    resp = await client.post("/_matrix/client/v3/logout", headers=auth(login["access_token"]))
    assert resp.status == 200
    resp = await client.get("/_matrix/client/v3/account/whoami", headers=auth(login["access_token"]))
    assert resp.status == 401
    assert (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"


async def test_bad_input(client: Any) -> None:
    resp = await client.post("/_matrix/client/v3/login", data=b"{not json")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_NOT_JSON")
    resp = await client.get("/_matrix/client/v3/account/whoami")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_MISSING_TOKEN")
    resp = await client.get("/_matrix/client/v3/nope")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")
    resp = await client.post("/_matrix/client/v3/login", data=b"x" * (14 * 1024 * 1024))
    assert (resp.status, (await resp.json())["errcode"]) == (413, "M_TOO_LARGE")


async def test_password_change_and_deactivate(client: Any) -> None:
    user = await register(client, "bob", password="old")
    other = await client.post(
        "/_matrix/client/v3/login",
        json={"type": "m.login.password", "user": "bob", "password": "old"},
    )
    other_token = (await other.json())["access_token"]
    body = {"new_password": "new"}
    resp = await client.post(
        "/_matrix/client/v3/account/password", json=body, headers=auth(user["access_token"])
    )
    assert resp.status == 401
    session = (await resp.json())["session"]
    body["auth"] = {"type": "m.login.password", "session": session, "user": "bob", "password": "old"}
    resp = await client.post(
        "/_matrix/client/v3/account/password", json=body, headers=auth(user["access_token"])
    )
    assert resp.status == 200, await resp.json()
    resp = await client.get("/_matrix/client/v3/account/whoami", headers=auth(other_token))
    assert resp.status == 401
    resp = await client.get("/_matrix/client/v3/account/whoami", headers=auth(user["access_token"]))
    assert resp.status == 200

    resp = await client.post(
        "/_matrix/client/v3/account/deactivate", json={}, headers=auth(user["access_token"])
    )
    session = (await resp.json())["session"]
    resp = await client.post(
        "/_matrix/client/v3/account/deactivate",
        json={"auth": {"type": "m.login.password", "session": session, "user": "bob", "password": "new"}},
        headers=auth(user["access_token"]),
    )
    assert resp.status == 200, await resp.json()
    resp = await client.post(
        "/_matrix/client/v3/login", json={"type": "m.login.password", "user": "bob", "password": "new"}
    )
    assert resp.status == 403


async def test_login_and_registration_rate_limits(aiohttp_client: Any, tmp_path: Any) -> None:
    from homeserver.app import create_app_from_config

    from ..conftest import make_config

    tight = {"per_second": 0.01, "burst_count": 2}
    config = make_config(
        tmp_path,
        rc_login={"address": tight, "account": tight, "failed_attempts": tight},
        rc_registration=tight,
    )
    client = await aiohttp_client(create_app_from_config(config))
    body = {"type": "m.login.password", "user": "nobody", "password": "x"}
    statuses = []
    for _ in range(3):
        resp = await client.post("/_matrix/client/v3/login", json=body)
        statuses.append(resp.status)
    assert statuses == [403, 403, 429]
    error = await resp.json()
    assert error["errcode"] == "M_LIMIT_EXCEEDED" and error["retry_after_ms"] > 0
    assert int(resp.headers["Retry-After"]) >= 1

    for _ in range(2):
        resp = await client.get("/_matrix/client/v3/register/available?username=free")
        assert resp.status == 200
    resp = await client.get("/_matrix/client/v3/register/available?username=free")
    assert resp.status == 429
