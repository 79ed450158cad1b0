"""Profiles: /profile/{userId} and its displayname / avatar_url fields."""

from __future__ import annotations

import secrets

from .client import V3, q
from .harness import Homeserver, User
from .spec_schema import assert_error, assert_matches_spec, assert_response_matches_spec

FIELD = "/profile/{userId}/{keyName}"
PROFILE = "/profile/{userId}"


def test_set_and_get_displayname(hs: Homeserver, user: User) -> None:
    path = f"{V3}/profile/{q(user.user_id)}/displayname"
    resp = user.client.put(path, {"displayname": "Alice Compat"})
    assert_response_matches_spec(resp, "profile.yaml", FIELD)
    got = assert_response_matches_spec(hs.client().get(path), "profile.yaml", FIELD)
    assert got["displayname"] == "Alice Compat"


def test_set_and_get_avatar_url(hs: Homeserver, user: User) -> None:
    path = f"{V3}/profile/{q(user.user_id)}/avatar_url"
    mxc = f"mxc://{user.server_name}/{secrets.token_hex(8)}"
    assert_response_matches_spec(user.client.put(path, {"avatar_url": mxc}), "profile.yaml", FIELD)
    got = assert_response_matches_spec(hs.client().get(path), "profile.yaml", FIELD)
    assert got["avatar_url"] == mxc


def test_get_full_profile(hs: Homeserver, user: User) -> None:
    base = f"{V3}/profile/{q(user.user_id)}"
    mxc = f"mxc://{user.server_name}/{secrets.token_hex(8)}"
    assert user.client.put(f"{base}/displayname", {"displayname": "Bob Compat"}).status == 200
    assert user.client.put(f"{base}/avatar_url", {"avatar_url": mxc}).status == 200
    body = assert_response_matches_spec(hs.client().get(base), "profile.yaml", PROFILE)
    assert body["displayname"] == "Bob Compat"
    assert body["avatar_url"] == mxc


def test_set_other_users_displayname(hs: Homeserver, user: User, other_user: User) -> None:
    path = f"{V3}/profile/{q(other_user.user_id)}/displayname"
    resp = user.client.put(path, {"displayname": "Hijacked"})
    if hs.is_synapse and resp.status == 400:
        # Synapse deviation: it answers 400 M_FORBIDDEN ("Cannot set another user's displayname");
        # the spec documents 403 M_FORBIDDEN for insufficient permissions.
        assert_error(resp, 400, "M_FORBIDDEN")
    else:
        assert_error(resp, 403, "M_FORBIDDEN")
        assert_matches_spec("profile.yaml", FIELD, "PUT", 403, resp.body)
    assert hs.client().get(path).body.get("displayname") != "Hijacked"


def test_set_displayname_requires_token(hs: Homeserver, user: User) -> None:
    resp = hs.client().put(f"{V3}/profile/{q(user.user_id)}/displayname", {"displayname": "Nope"})
    assert_error(resp, 401, "M_MISSING_TOKEN")


def test_profile_unknown_user(hs: Homeserver, user: User) -> None:
    ghost = f"@ghost_{secrets.token_hex(6)}:{user.server_name}"
    resp = hs.client().get(f"{V3}/profile/{q(ghost)}")
    # The spec documents 404 without naming an errcode; M_NOT_FOUND is the catalogue's fit.
    # Synapse bug: for an unknown local user it leaks a storage error, 404 M_UNKNOWN
    # "No row found (profiles)", so Synapse alone may send M_UNKNOWN.
    assert_error(resp, 404, ("M_NOT_FOUND", "M_UNKNOWN") if hs.is_synapse else "M_NOT_FOUND")
    assert_matches_spec("profile.yaml", PROFILE, "GET", 404, resp.body)


def test_profile_field_unknown_user(hs: Homeserver, user: User) -> None:
    ghost = f"@ghost_{secrets.token_hex(6)}:{user.server_name}"
    resp = hs.client().get(f"{V3}/profile/{q(ghost)}/displayname")
    assert_error(resp, 404, "M_NOT_FOUND")
    assert_matches_spec("profile.yaml", FIELD, "GET", 404, resp.body)


def test_set_displayname_wrong_type(user: User) -> None:
    resp = user.client.put(f"{V3}/profile/{q(user.user_id)}/displayname", {"displayname": 12345})
    # The spec says the value MUST be a string but names no errcode for a wrong type; its
    # catalogue fits both M_BAD_JSON ("invalid values for keys") and M_INVALID_PARAM.
    assert_error(resp, 400, ("M_BAD_JSON", "M_INVALID_PARAM"))


def test_set_displayname_missing_key(user: User) -> None:
    resp = user.client.put(f"{V3}/profile/{q(user.user_id)}/displayname", {"avatar_url": "mxc://x/y"})
    # Spec: M_MISSING_PARAM when the keyName property is missing; M_BAD_JSON accepted as well.
    assert_error(resp, 400, ("M_MISSING_PARAM", "M_BAD_JSON"))
