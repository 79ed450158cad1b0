"""Session management: /login, /account/whoami, /logout, /logout/all, /refresh, r0 aliases."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from .client import R0, V3, q
from .harness import Homeserver, User
from .spec_schema import (
    assert_error,
    assert_matches_spec,
    assert_request_matches_spec,
    assert_response_matches_spec,
)


def _whoami(hs: Homeserver, token: str) -> Any:
    return hs.client(token).get(f"{V3}/account/whoami")


def test_login_flows(hs: Homeserver) -> None:
    body = assert_response_matches_spec(hs.client().get(f"{V3}/login"), "login.yaml", "/login")
    assert "m.login.password" in [flow["type"] for flow in body["flows"]]


@pytest.mark.parametrize(
    "how", ["identifier_localpart", "identifier_mxid", "legacy_user_localpart", "legacy_user_mxid"]
)
def test_login_password(hs: Homeserver, user: User, how: str) -> None:
    who = user.user_id if how.endswith("mxid") else user.localpart
    body: dict[str, Any] = {"type": "m.login.password", "password": user.password}
    if how.startswith("identifier"):
        body["identifier"] = {"type": "m.id.user", "user": who}
    else:
        body["user"] = who  # deprecated in the spec, still accepted
    assert_request_matches_spec("login.yaml", "/login", "POST", body)
    resp = hs.client().post(f"{V3}/login", body)
    login = assert_response_matches_spec(resp, "login.yaml", "/login")
    assert login["user_id"] == user.user_id
    assert login["device_id"] != user.device_id, "login without device_id must create a new device"
    whoami = _whoami(hs, login["access_token"])
    assert whoami.status == 200, whoami.describe()
    assert whoami.body["user_id"] == user.user_id
    assert whoami.body["device_id"] == login["device_id"]


def test_login_with_device_id_and_display_name(hs: Homeserver, user: User) -> None:
    device_id = "COMPAT" + secrets.token_hex(4).upper()
    resp = hs.login(user.user_id, user.password, device_id=device_id, initial_device_display_name="Phone")
    login = assert_response_matches_spec(resp, "login.yaml", "/login")
    assert login["device_id"] == device_id
    dev = hs.client(login["access_token"]).get(f"{V3}/devices/{q(device_id)}")
    assert dev.status == 200, dev.describe()
    assert dev.body["device_id"] == device_id
    assert dev.body.get("display_name") == "Phone"
    # Logging in again to the same device keeps the device id.
    again = hs.login(user.user_id, user.password, device_id=device_id)
    assert again.status == 200, again.describe()
    assert again.body["device_id"] == device_id
    assert _whoami(hs, again.body["access_token"]).body["device_id"] == device_id


def test_login_wrong_password(hs: Homeserver, user: User) -> None:
    resp = hs.login(user.user_id, user.password + "-wrong")
    assert_error(resp, 403, "M_FORBIDDEN")
    assert_matches_spec("login.yaml", "/login", "POST", 403, resp.body)


def test_login_unknown_user(hs: Homeserver, user: User) -> None:
    resp = hs.login(f"@nobody_{secrets.token_hex(6)}:{user.server_name}", "whatever-password")
    assert_error(resp, 403, "M_FORBIDDEN")


def test_login_unknown_type(hs: Homeserver) -> None:
    resp = hs.client().post(f"{V3}/login", {"type": "m.login.compat_test_unknown"})
    # The spec documents 400 for an unrecognised login type but prescribes no errcode
    # (its example uses M_UNKNOWN, which is what Synapse sends).
    assert_error(resp, 400)
    assert_matches_spec("login.yaml", "/login", "POST", 400, resp.body)


# --------------------------------------------------------------------------- whoami


def test_whoami(user: User) -> None:
    body = assert_response_matches_spec(
        user.client.get(f"{V3}/account/whoami"), "whoami.yaml", "/account/whoami"
    )
    assert body["user_id"] == user.user_id
    assert body["device_id"] == user.device_id
    assert body.get("is_guest", False) is False


def test_whoami_missing_token(hs: Homeserver) -> None:
    resp = hs.client().get(f"{V3}/account/whoami")
    assert_error(resp, 401, "M_MISSING_TOKEN")
    assert_matches_spec("whoami.yaml", "/account/whoami", "GET", 401, resp.body)


def test_whoami_unknown_token(hs: Homeserver) -> None:
    resp = _whoami(hs, "syt_not_a_real_token_" + secrets.token_hex(8))
    body = assert_error(resp, 401, "M_UNKNOWN_TOKEN")
    assert_matches_spec("whoami.yaml", "/account/whoami", "GET", 401, body)
    if "soft_logout" in body:
        assert isinstance(body["soft_logout"], bool)


# --------------------------------------------------------------------------- logout


def test_logout(hs: Homeserver, user: User) -> None:
    second = hs.login_ok(user)
    resp = second.client.post(f"{V3}/logout", {})
    assert_response_matches_spec(resp, "logout.yaml", "/logout")
    assert_error(_whoami(hs, second.access_token), 401, "M_UNKNOWN_TOKEN")
    # The other session is untouched.
    assert _whoami(hs, user.access_token).status == 200
    # The logged-out device is gone.
    devices = user.client.get(f"{V3}/devices").body["devices"]
    assert second.device_id not in [d["device_id"] for d in devices]


def test_logout_all(hs: Homeserver, user: User) -> None:
    second = hs.login_ok(user)
    resp = second.client.post(f"{V3}/logout/all", {})
    assert_response_matches_spec(resp, "logout.yaml", "/logout/all")
    assert_error(_whoami(hs, second.access_token), 401, "M_UNKNOWN_TOKEN")
    assert_error(_whoami(hs, user.access_token), 401, "M_UNKNOWN_TOKEN")
    # The password still works afterwards.
    assert hs.login(user.user_id, user.password).status == 200


def test_logout_requires_token(hs: Homeserver) -> None:
    assert_error(hs.client().post(f"{V3}/logout", {}), 401, "M_MISSING_TOKEN")


# --------------------------------------------------------------------------- r0 aliases


def test_r0_whoami(user: User) -> None:
    resp = user.client.get(f"{R0}/account/whoami")
    body = assert_response_matches_spec(resp, "whoami.yaml", "/account/whoami")
    assert body["user_id"] == user.user_id


def test_r0_login(hs: Homeserver, user: User) -> None:
    assert_response_matches_spec(hs.client().get(f"{R0}/login"), "login.yaml", "/login")
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.localpart},
        "password": user.password,
    }
    login = assert_response_matches_spec(hs.client().post(f"{R0}/login", body), "login.yaml", "/login")
    assert login["user_id"] == user.user_id


# --------------------------------------------------------------------------- refresh tokens


def test_refresh_token(hs: Homeserver, user: User) -> None:
    resp = hs.login(user.user_id, user.password, refresh_token=True)
    login = assert_response_matches_spec(resp, "login.yaml", "/login")
    if "refresh_token" not in login:
        pytest.skip("server issues no refresh tokens (allowed: refresh tokens are optional)")
    assert isinstance(login.get("expires_in_ms"), int)
    old_refresh = login["refresh_token"]
    refreshed = hs.client().post(f"{V3}/refresh", {"refresh_token": old_refresh})
    body = assert_response_matches_spec(refreshed, "refresh.yaml", "/refresh")
    assert body["access_token"] != login["access_token"]
    whoami = _whoami(hs, body["access_token"])
    assert whoami.status == 200, whoami.describe()
    assert whoami.body["device_id"] == login["device_id"], "refreshed token must stay on the same device"
    if "refresh_token" in body:
        # Once the new access token has been used, the old refresh token is revoked.
        again = hs.client().post(f"{V3}/refresh", {"refresh_token": old_refresh})
        if hs.is_synapse and again.status == 403:
            # Synapse deviation: a revoked refresh token gets 403 M_FORBIDDEN ("refresh token
            # isn't valid anymore"); the spec documents 401 for "unknown, or already used".
            assert_error(again, 403, "M_FORBIDDEN")
        else:
            assert_error(again, 401, "M_UNKNOWN_TOKEN")
            assert_matches_spec("refresh.yaml", "/refresh", "POST", 401, again.body)


def test_refresh_unknown_token(hs: Homeserver) -> None:
    resp = hs.client().post(f"{V3}/refresh", {"refresh_token": "syr_unknown_" + secrets.token_hex(8)})
    assert_error(resp, 401, "M_UNKNOWN_TOKEN")
    assert_matches_spec("refresh.yaml", "/refresh", "POST", 401, resp.body)
