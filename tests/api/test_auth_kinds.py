"""Auth kinds declared on routes, resolved in one place (http/auth.py), over HTTP.

No federation or appservice endpoint exists yet, so the test mounts a small router with one route
of each kind beside the client API and drives it like a remote server or an appservice would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.app import add_routers, create_app_from_config
from homeserver.appservice.registry import ApplicationService, InMemoryAppServiceRegistry, Namespace
from homeserver.crypto.keyring import InMemoryKeyring, ServerVerifyKey
from homeserver.crypto.keys import ServerSigningKey
from homeserver.crypto.request_auth import sign_request
from homeserver.http.routing import ApiRequest, Auth, Router

from ..conftest import make_config, services_of
from .helpers import auth, register

SERVER_NAME = "test.local"  # make_config's server_name
REMOTE = "remote.example"
REMOTE_KEY = ServerSigningKey.from_signing_key(generate_signing_key("k1"))

probe = Router()


def _who(req: ApiRequest) -> dict[str, Any]:
    r = req.requester
    return {
        "user_id": r.user_id if r else None,
        "device_id": r.device_id if r else None,
        "app_service_id": r.app_service_id if r else None,
        "is_admin": r.is_admin if r else None,
        "origin": req.server.server_name if req.server else None,
    }


@probe.get("/probe/user", prefixes=("/_test",))
async def probe_user(req: ApiRequest) -> Any:
    return _who(req)


@probe.get("/probe/optional", prefixes=("/_test",), auth=Auth.OPTIONAL)
async def probe_optional(req: ApiRequest) -> Any:
    return _who(req)


@probe.get("/probe/admin", prefixes=("/_test",), auth=Auth.ADMIN)
async def probe_admin(req: ApiRequest) -> Any:
    return _who(req)


@probe.get("/probe/appservice", prefixes=("/_test",), auth=Auth.APPSERVICE)
async def probe_appservice(req: ApiRequest) -> Any:
    return _who(req)


@probe.get("/probe/server", prefixes=("/_test",), auth=Auth.SERVER)
async def probe_server_get(req: ApiRequest) -> Any:
    return _who(req)


@probe.put("/probe/server/{txn}", prefixes=("/_test",), auth=Auth.SERVER)
async def probe_server_put(req: ApiRequest) -> Any:
    return {**_who(req), "body": await req.json()}


IRC = ApplicationService(
    id="irc",
    as_token="as-token-irc",
    hs_token="hs-token-irc",
    sender=f"@ircbot:{SERVER_NAME}",
    users=(Namespace(r"@irc_.*", exclusive=True),),
)


@pytest.fixture
async def hs(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await _client(aiohttp_client, tmp_path)


async def _client(aiohttp_client: Any, tmp_path: Path, **extra: Any) -> Any:
    app = create_app_from_config(make_config(tmp_path, **extra))
    add_routers(app, [probe])
    client = await aiohttp_client(app)
    services = services_of(client)
    assert isinstance(services.appservices, InMemoryAppServiceRegistry)
    services.appservices.add(IRC)
    # The remote server's key as if already fetched (the federation keyring would fetch it).
    services.keyring = InMemoryKeyring(
        (ServerVerifyKey(REMOTE, REMOTE_KEY.key_id, REMOTE_KEY.verify_key, 2**62),)
    )
    return client


async def call(client: Any, path: str, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, Any]:
    resp = await client.get(f"/_test/probe/{path}", headers=headers or {}, **kw)
    return resp.status, await resp.json()


# -- users and admins ------------------------------------------------------------------------------


async def test_user_token(hs: Any) -> None:
    alice = await register(hs)
    status, body = await call(hs, "user", auth(alice["access_token"]))
    assert status == 200
    assert body == {
        "user_id": alice["user_id"],
        "device_id": alice["device_id"],
        "app_service_id": None,
        "is_admin": False,
        "origin": None,
    }
    # `user_id` masquerading means nothing with a user's own token
    masquerade = {"user_id": "@irc_x:test.local"}
    status, body = await call(hs, "user", auth(alice["access_token"]), params=masquerade)
    assert (status, body["user_id"]) == (200, alice["user_id"])


async def test_missing_and_unknown_tokens(hs: Any) -> None:
    assert (await call(hs, "user"))[1]["errcode"] == "M_MISSING_TOKEN"
    status, body = await call(hs, "user", auth("nope"))
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    status, body = await call(hs, "optional")
    assert (status, body["user_id"]) == (200, None)
    status, body = await call(hs, "optional", auth("nope"))
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def test_admin_kind(hs: Any) -> None:
    alice = await register(hs)
    root = await register(hs, admin=True)
    status, body = await call(hs, "admin", auth(alice["access_token"]))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await call(hs, "admin", auth(root["access_token"]))
    assert (status, body["is_admin"]) == (200, True)


# -- appservices ---------------------------------------------------------------------------------


async def test_appservice_acts_as_its_sender(hs: Any) -> None:
    status, body = await call(hs, "user", auth(IRC.as_token))
    assert status == 200
    assert (body["user_id"], body["app_service_id"], body["device_id"]) == (IRC.sender, "irc", None)
    status, body = await call(hs, "user", params={"access_token": IRC.as_token, "user_id": IRC.sender})
    assert (status, body["user_id"]) == (200, IRC.sender)


async def _as_register(hs: Any, localpart: str, **extra: Any) -> Any:
    resp = await hs.post(
        "/_matrix/client/v3/register",
        json={"type": "m.login.application_service", "username": localpart, **extra},
        headers=auth(IRC.as_token),
    )
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def test_appservice_masquerades_inside_its_namespace(hs: Any) -> None:
    ghost = await _as_register(hs, "irc_alice", inhibit_login=True)
    assert "access_token" not in ghost
    status, body = await call(hs, "user", auth(IRC.as_token), params={"user_id": ghost["user_id"]})
    assert status == 200, body
    assert (body["user_id"], body["app_service_id"]) == (ghost["user_id"], "irc")


async def test_appservice_masquerades_a_device_of_the_user(hs: Any) -> None:
    ghost = await _as_register(hs, "irc_dev", device_id="GHOSTDEV")
    params = {"user_id": ghost["user_id"], "device_id": "GHOSTDEV"}
    status, body = await call(hs, "user", auth(IRC.as_token), params=params)
    assert (status, body["user_id"], body["device_id"]) == (200, ghost["user_id"], "GHOSTDEV")
    params["device_id"] = "NOTHERS"
    status, body = await call(hs, "user", auth(IRC.as_token), params=params)
    assert (status, body["errcode"]) == (400, "M_UNKNOWN_DEVICE")


async def test_exclusive_namespace_refused_to_ordinary_registration(hs: Any) -> None:
    resp = await hs.post(
        "/_matrix/client/v3/register",
        json={"username": "irc_mallory", "password": "pw-12345678", "auth": {"type": "m.login.dummy"}},
    )
    body = await resp.json()
    assert (resp.status, body["errcode"]) == (400, "M_EXCLUSIVE")
    # and an appservice registers only inside its own namespaces
    resp = await hs.post(
        "/_matrix/client/v3/register",
        json={"type": "m.login.application_service", "username": "notirc"},
        headers=auth(IRC.as_token),
    )
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_EXCLUSIVE")


async def test_appservice_masquerading_limits(hs: Any) -> None:
    alice = await register(hs)
    # outside the namespace
    status, body = await call(hs, "user", auth(IRC.as_token), params={"user_id": alice["user_id"]})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # inside the namespace, but nobody registered that user
    status, body = await call(hs, "user", auth(IRC.as_token), params={"user_id": "@irc_nobody:test.local"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_appservice_kind_takes_only_as_tokens(hs: Any) -> None:
    alice = await register(hs)
    status, body = await call(hs, "appservice", auth(IRC.as_token))
    assert (status, body["app_service_id"]) == (200, "irc")
    status, body = await call(hs, "appservice", auth(alice["access_token"]))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await call(hs, "appservice", auth("nope"))
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")


# -- servers ---------------------------------------------------------------------------------------


def x_matrix(method: str, uri: str, content: Any = None, destination: str = SERVER_NAME) -> dict[str, str]:
    header = sign_request(
        REMOTE_KEY, origin=REMOTE, destination=destination, method=method, uri=uri, content=content
    )
    return {"Authorization": header}


async def test_server_kind_verifies_x_matrix(hs: Any) -> None:
    uri = "/_test/probe/server?since=a%20b&limit=3"
    resp = await hs.get(uri, headers=x_matrix("GET", uri))
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["origin"], body["user_id"]) == (REMOTE, None)

    content = {"pdus": [], "edus": [{"edu_type": "m.typing"}]}
    uri = "/_test/probe/server/txn1"
    resp = await hs.put(uri, data=json.dumps(content), headers=x_matrix("PUT", uri, content))
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["origin"], body["body"]) == (REMOTE, content)


async def test_server_kind_rejections(hs: Any) -> None:
    uri = "/_test/probe/server/txn1"
    content = {"pdus": []}

    async def put(headers: dict[str, str], data: str = json.dumps(content)) -> tuple[int, str]:
        resp = await hs.put(uri, data=data, headers=headers)
        return resp.status, (await resp.json())["errcode"]

    assert await put({}) == (401, "M_UNAUTHORIZED")
    assert await put({"Authorization": 'X-Matrix origin="remote.example"'}) == (400, "M_UNAUTHORIZED")
    elsewhere = x_matrix("PUT", uri, content, destination="elsewhere.example")
    assert await put(elsewhere) == (401, "M_UNAUTHORIZED")
    # signed over another body, another path, another method
    assert await put(x_matrix("PUT", uri, {"pdus": [1]})) == (401, "M_UNAUTHORIZED")
    assert await put(x_matrix("PUT", "/_test/probe/server/txn2", content)) == (401, "M_UNAUTHORIZED")
    assert await put(x_matrix("POST", uri, content)) == (401, "M_UNAUTHORIZED")
    assert await put(x_matrix("PUT", uri, content), data="{not json") == (400, "M_NOT_JSON")
    # a user token is no server credential
    alice = await register(hs)
    assert await put(auth(alice["access_token"])) == (401, "M_UNAUTHORIZED")


async def test_unknown_server_key(hs: Any) -> None:
    stranger = ServerSigningKey.from_signing_key(generate_signing_key("k1"))
    uri = "/_test/probe/server"
    header = sign_request(stranger, origin="stranger.example", destination=SERVER_NAME, method="GET", uri=uri)
    status, body = await call(hs, "server", {"Authorization": header})
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_federation_domain_whitelist(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, tmp_path, federation_domain_whitelist=["friend.example"])
    uri = "/_test/probe/server"
    status, body = await call(client, "server", x_matrix("GET", uri))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
