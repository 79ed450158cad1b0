"""Account management: /account/password and /account/deactivate (with user-interactive auth)."""

from __future__ import annotations

from .client import ADMIN_REGISTER, DEFAULT_PASSWORD, V3, registration_mac
from .harness import Homeserver, User, assert_uia_challenge, password_auth, with_uia
from .spec_schema import assert_error, assert_matches_spec, assert_response_matches_spec

NEW_PASSWORD = "a brand new passphrase 2"


def test_change_password(hs: Homeserver, user: User) -> None:
    other = hs.login_ok(user)
    resp = with_uia(
        user,
        "POST",
        f"{V3}/account/password",
        {"new_password": NEW_PASSWORD},
        "password_management.yaml",
        "/account/password",
    )
    assert_response_matches_spec(resp, "password_management.yaml", "/account/password")
    assert_error(hs.login(user.user_id, user.password), 403, "M_FORBIDDEN")
    assert hs.login(user.user_id, NEW_PASSWORD).status == 200
    # logout_devices defaults to true: other devices lose their tokens, the requester keeps its own.
    assert_error(other.client.get(f"{V3}/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    assert user.client.get(f"{V3}/account/whoami").status == 200


def test_change_password_keep_devices(hs: Homeserver, user: User) -> None:
    other = hs.login_ok(user)
    body = {"new_password": NEW_PASSWORD, "logout_devices": False}
    resp = with_uia(
        user, "POST", f"{V3}/account/password", body, "password_management.yaml", "/account/password"
    )
    assert_response_matches_spec(resp, "password_management.yaml", "/account/password")
    assert other.client.get(f"{V3}/account/whoami").status == 200


def test_change_password_wrong_auth(hs: Homeserver, user: User) -> None:
    path = f"{V3}/account/password"
    challenge = assert_uia_challenge(
        user.client.post(path, {"new_password": NEW_PASSWORD}),
        "password_management.yaml",
        "/account/password",
    )
    auth = {**password_auth(user, challenge["session"]), "password": "not my password"}
    resp = user.client.post(path, {"new_password": NEW_PASSWORD, "auth": auth})
    body = assert_error(resp, 401, "M_FORBIDDEN")
    assert_matches_spec("password_management.yaml", "/account/password", "POST", 401, body)
    assert hs.login(user.user_id, user.password).status == 200


def test_deactivate(hs: Homeserver, user: User) -> None:
    other = hs.login_ok(user)
    resp = with_uia(
        user, "POST", f"{V3}/account/deactivate", {}, "account_deactivation.yaml", "/account/deactivate"
    )
    body = assert_response_matches_spec(resp, "account_deactivation.yaml", "/account/deactivate")
    assert body["id_server_unbind_result"] in ("success", "no-support")
    for session in (user, other):
        assert_error(session.client.get(f"{V3}/account/whoami"), 401, "M_UNKNOWN_TOKEN")
    # Spec (POST /login 403): M_USER_DEACTIVATED, or M_FORBIDDEN when the server can no longer
    # authenticate the user (Synapse wipes the password hash on deactivation).
    login = hs.login(user.user_id, user.password)
    assert_error(login, 403, ("M_USER_DEACTIVATED", "M_FORBIDDEN"))
    # A deactivated user id can never be registered again.
    assert hs.shared_secret
    nonce = hs.client().get(ADMIN_REGISTER).body["nonce"]
    mac = registration_mac(hs.shared_secret, nonce, user.localpart, DEFAULT_PASSWORD, False)
    again = hs.client().post(
        ADMIN_REGISTER,
        {
            "nonce": nonce,
            "username": user.localpart,
            "password": DEFAULT_PASSWORD,
            "admin": False,
            "mac": mac,
        },
    )
    assert_error(again, 400, "M_USER_IN_USE")


def test_deactivate_requires_auth(hs: Homeserver, user: User) -> None:
    assert_uia_challenge(
        user.client.post(f"{V3}/account/deactivate", {}), "account_deactivation.yaml", "/account/deactivate"
    )
    assert user.client.get(f"{V3}/account/whoami").status == 200
