"""OpenID tokens, black-box: POST /user/{userId}/openid/request_token (openid.yaml) for oneself,
and refused for another user. The token's exchange (GET /_matrix/federation/v1/openid/userinfo)
is on the federation listener, which these tests do not assume."""

from __future__ import annotations

from .client import V3, q
from .harness import User, assert_api_error
from .spec_schema import assert_response_matches_spec

REQUEST_TOKEN = "/user/{userId}/openid/request_token"


def test_request_openid_token(user: User) -> None:
    resp = user.client.post(f"{V3}/user/{q(user.user_id)}/openid/request_token", {})
    body = assert_response_matches_spec(resp, "openid.yaml", REQUEST_TOKEN)
    assert body["token_type"] == "Bearer"
    assert body["matrix_server_name"] == user.user_id.split(":", 1)[1]
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert body["access_token"]
    # The OpenID token is not an access token.
    resp = user.client.with_token(body["access_token"]).get(f"{V3}/account/whoami")
    assert resp.status == 401


def test_request_openid_token_for_another_user(user: User, other_user: User) -> None:
    resp = user.client.post(f"{V3}/user/{q(other_user.user_id)}/openid/request_token", {})
    assert_api_error(resp, "openid.yaml", REQUEST_TOKEN, 403, "M_FORBIDDEN")
