"""LDAP password login against a real OpenLDAP slapd (tests/ldap/slapd.py), configured with the
very `modules:` block Synapse operators write for matrix-synapse-ldap3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nio
import pytest

from homeserver.app import create_app_from_config
from homeserver.config import ConfigError, build_config
from tests.conftest import make_config
from tests.ldap.slapd import Slapd, person_dn, running_slapd, synapse_ldap_module

from .helpers import auth, register


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture
async def ldap_client(aiohttp_client: Any, tmp_path: Path, slapd: Slapd) -> Any:
    config = make_config(tmp_path, modules=[synapse_ldap_module(slapd.uri)])
    return await aiohttp_client(create_app_from_config(config))


async def login(client: Any, password: str, *, user: str | None = None, email: str | None = None) -> Any:
    identifier = (
        {"type": "m.id.user", "user": user}
        if user is not None
        else {"type": "m.id.thirdparty", "medium": "email", "address": email}
    )
    return await client.post(
        "/_matrix/client/v3/login",
        json={"type": "m.login.password", "identifier": identifier, "password": password},
    )


async def admin_view(client: Any, user_id: str) -> dict[str, Any]:
    admin = await register(client, admin=True)
    resp = await client.get(f"/_synapse/admin/v2/users/{user_id}", headers=auth(admin["access_token"]))
    assert resp.status == 200
    return dict(await resp.json())


async def test_first_login_creates_the_account_from_the_directory(ldap_client: Any) -> None:
    resp = await login(ldap_client, "minjun-pw", user="kim.minjun")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["user_id"] == "@kim.minjun:test.local"
    token = body["access_token"]
    resp = await ldap_client.get("/_matrix/client/v3/profile/@kim.minjun:test.local")
    assert (await resp.json())["displayname"] == "김민준"
    view = await admin_view(ldap_client, "@kim.minjun:test.local")
    threepids = [(t["medium"], t["address"]) for t in view["threepids"]]
    assert threepids == [("email", "minjun.kim@school.example")]
    assert view["external_ids"] == [{"auth_provider": "ldap", "external_id": person_dn("kim.minjun")}]
    # The second login finds the same account; full ids and other cases name the same user.
    for name in ("@kim.minjun:test.local", "Kim.Minjun"):
        resp = await login(ldap_client, "minjun-pw", user=name)
        assert resp.status == 200 and (await resp.json())["user_id"] == "@kim.minjun:test.local"
    resp = await ldap_client.get("/_matrix/client/v3/account/whoami", headers=auth(token))
    assert resp.status == 200


async def test_wrong_password_unknown_user_and_filter(ldap_client: Any) -> None:
    for user, password in (
        ("lee.seoyeon", "wrong"),
        ("nobody", "whatever"),
        ("outsider", "outsider-pw"),  # in the directory, not in the group the filter names
        ("lee.seoyeon", ""),  # an empty password would be an anonymous bind
    ):
        resp = await login(ldap_client, password, user=user)
        assert resp.status == 403, (user, await resp.json())
        assert (await resp.json())["errcode"] == "M_FORBIDDEN"


async def test_filter_values_are_escaped(ldap_client: Any) -> None:
    # `a*` would match `alpha` if the login name went into the filter unescaped.
    for name in ("a*", "*", "alpha)(uid=*", "alp\\2a"):
        resp = await login(ldap_client, "alpha-pw", user=name)
        assert resp.status in (400, 403), name
    resp = await login(ldap_client, "alpha-pw", user="alpha")
    assert resp.status == 200


async def test_uid_that_is_no_localpart_is_refused(ldap_client: Any) -> None:
    resp = await login(ldap_client, "space-pw", user="Space Name")
    assert resp.status == 403


async def test_login_by_email(ldap_client: Any) -> None:
    # Before the first login the address is only in the directory.
    resp = await login(ldap_client, "teacher-pw", email="Jihoon.Park@school.example")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["user_id"] == "@park.teacher:test.local"
    # Afterwards it is the account's validated address.
    resp = await login(ldap_client, "teacher-pw", email="jihoon.park@school.example")
    assert resp.status == 200
    resp = await login(ldap_client, "wrong", email="jihoon.park@school.example")
    assert resp.status == 403
    resp = await login(ldap_client, "x", email="nobody@school.example")
    assert resp.status == 403


async def test_local_accounts_still_work_and_deactivation_holds(ldap_client: Any) -> None:
    local = await register(ldap_client, "localstaff", password="local-pw")
    resp = await login(ldap_client, "local-pw", user="localstaff")
    assert resp.status == 200
    # A directory user deactivated here stays out even with the right directory password.
    resp = await login(ldap_client, "seoyeon-pw", user="lee.seoyeon")
    assert resp.status == 200
    admin = await register(ldap_client, admin=True)
    resp = await ldap_client.post(
        "/_synapse/admin/v1/deactivate/@lee.seoyeon:test.local",
        json={},
        headers=auth(admin["access_token"]),
    )
    assert resp.status == 200
    resp = await login(ldap_client, "seoyeon-pw", user="lee.seoyeon")
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_USER_DEACTIVATED")
    assert local["user_id"] == "@localstaff:test.local"


async def test_user_interactive_auth_goes_through_ldap(ldap_client: Any) -> None:
    resp = await login(ldap_client, "alpha-pw", user="alpha")
    body = await resp.json()
    token, device = body["access_token"], body["device_id"]
    resp = await ldap_client.delete(f"/_matrix/client/v3/devices/{device}", json={}, headers=auth(token))
    assert resp.status == 401
    session = (await resp.json())["session"]
    for password, status in (("wrong", 401), ("alpha-pw", 200)):
        resp = await ldap_client.delete(
            f"/_matrix/client/v3/devices/{device}",
            json={
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": "alpha"},
                    "password": password,
                    "session": session,
                }
            },
            headers=auth(token),
        )
        assert resp.status == status, await resp.json()


async def test_directory_down_fails_fast_and_local_users_log_in(aiohttp_client: Any, tmp_path: Path) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    config = make_config(tmp_path, modules=[synapse_ldap_module("ldap://127.0.0.1:1", connect_timeout=1)])
    client = await aiohttp_client(create_app_from_config(config))
    await register(client, "localonly", password="local-pw")
    resp = await login(client, "local-pw", user="localonly")
    assert resp.status == 200
    resp = await login(client, "minjun-pw", user="kim.minjun")
    body = await resp.json()
    assert (resp.status, body["errcode"]) == (503, "M_UNKNOWN"), body
    assert "directory" in body["error"]


async def test_matrix_nio_logs_in_with_the_directory_password(ldap_client: Any) -> None:
    nio_client = nio.AsyncClient(str(ldap_client.make_url("")).rstrip("/"), "lee.seoyeon")
    try:
        response = await nio_client.login("seoyeon-pw", device_name="nio")
        assert isinstance(response, nio.LoginResponse), response
        assert response.user_id == "@lee.seoyeon:test.local"
    finally:
        await nio_client.close()


def test_config_reads_the_synapse_block_and_reports_other_modules(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        modules=[
            synapse_ldap_module("ldap://ldap.example:389"),
            {"module": "synapse_http_antispam.HTTPAntispam", "config": {"base_url": "x"}},
        ],
    )
    assert config.ldap is not None and config.ldap.uris == ("ldap://ldap.example:389",)
    assert config.ldap.search_mode and config.ldap.filter is not None
    assert any("synapse_http_antispam" in key for key in config.unknown_keys)
    # disabled: no provider
    disabled = make_config(tmp_path, modules=[synapse_ldap_module("ldap://x", enabled=False)])
    assert disabled.ldap is None


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"uri": "http://ldap"}, "modules[0].config.uri"),
        ({"base": None}, "modules[0].config.base"),
        ({"filter": "memberOf=x"}, "modules[0].config.filter"),
        ({"bind_password": None}, "modules[0].config"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, override: dict[str, Any], path: str) -> None:
    module = synapse_ldap_module("ldap://x")
    module["config"].update(override)  # type: ignore[attr-defined]
    raw = {"server_name": "test.local", "modules": [module]}
    with pytest.raises(ConfigError) as info:
        build_config(raw)
    assert path in str(info.value)
