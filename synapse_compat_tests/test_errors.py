"""Cross-cutting behaviour: unknown endpoints, bad bodies, auth errors, CORS."""

from __future__ import annotations

import pytest

from .client import V3, q
from .harness import Homeserver, User
from .spec_schema import assert_error

SPEC_CORS_METHODS = {"GET", "POST", "PUT", "DELETE", "OPTIONS"}
SPEC_CORS_HEADERS = {"x-requested-with", "content-type", "authorization"}


@pytest.mark.parametrize(
    "path", [f"{V3}/compat_no_such_endpoint", "/_matrix/client/v99/login", f"{V3}/rooms/!x:y/no_such_thing"]
)
def test_unknown_endpoint(hs: Homeserver, path: str) -> None:
    assert_error(hs.client().get(path), 404, "M_UNRECOGNIZED")


@pytest.mark.parametrize(("method", "path"), [("DELETE", f"{V3}/login"), ("PUT", f"{V3}/account/whoami")])
def test_wrong_method(hs: Homeserver, user: User, method: str, path: str) -> None:
    assert_error(user.client.request(method, path, {}), 405, "M_UNRECOGNIZED")


def test_malformed_json_unauthenticated(hs: Homeserver) -> None:
    assert_error(hs.client().post(f"{V3}/login", data=b'{"type": "m.login.password",'), 400, "M_NOT_JSON")


def test_malformed_json_authenticated(user: User) -> None:
    resp = user.client.put(f"{V3}/profile/{q(user.user_id)}/displayname", data=b"not json at all")
    assert_error(resp, 400, "M_NOT_JSON")


def test_json_not_an_object(hs: Homeserver) -> None:
    # Valid JSON of the wrong shape: the spec's M_BAD_JSON fits; M_NOT_JSON accepted as well.
    assert_error(hs.client().post(f"{V3}/login", data=b"[1, 2, 3]"), 400, ("M_BAD_JSON", "M_NOT_JSON"))


@pytest.mark.parametrize(
    "body",
    [
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "someone"}, "password": 1},
        {"type": 42},
    ],
)
def test_login_wrong_types(hs: Homeserver, body: dict[str, object]) -> None:
    # The spec's catalogue has M_BAD_JSON ("invalid values for keys") and M_INVALID_PARAM
    # ("expected an integer and instead received a string") for this; either is accepted.
    assert_error(hs.client().post(f"{V3}/login", body), 400, ("M_BAD_JSON", "M_INVALID_PARAM"))


def test_device_rename_wrong_type(user: User) -> None:
    resp = user.client.put(f"{V3}/devices/{q(user.device_id)}", {"display_name": 5})
    assert_error(resp, 400, ("M_BAD_JSON", "M_INVALID_PARAM"))


def test_unknown_token(hs: Homeserver) -> None:
    assert_error(hs.client("not-a-token").get(f"{V3}/devices"), 401, "M_UNKNOWN_TOKEN")


def test_missing_token(hs: Homeserver) -> None:
    assert_error(hs.client().get(f"{V3}/devices"), 401, "M_MISSING_TOKEN")


def _csv(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


@pytest.mark.parametrize("path", [f"{V3}/login", f"{V3}/account/whoami", "/_matrix/client/versions"])
def test_cors_preflight(hs: Homeserver, path: str) -> None:
    resp = hs.client().options(
        path,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert resp.status in (200, 204), resp.describe()
    assert resp.header("Access-Control-Allow-Origin") == "*", resp.describe()
    methods = {m.upper() for m in _csv(resp.header("Access-Control-Allow-Methods"))}
    assert SPEC_CORS_METHODS <= methods, f"Allow-Methods {methods} misses {SPEC_CORS_METHODS - methods}"
    allowed = {h.lower() for h in _csv(resp.header("Access-Control-Allow-Headers"))}
    assert SPEC_CORS_HEADERS <= allowed, f"Allow-Headers {allowed} misses {SPEC_CORS_HEADERS - allowed}"


@pytest.mark.parametrize("path", ["/_matrix/client/versions", f"{V3}/compat_no_such_endpoint"])
def test_cors_on_responses(hs: Homeserver, path: str) -> None:
    # "The recommended CORS headers to be returned by servers on all requests", errors included.
    resp = hs.client().get(path, headers={"Origin": "https://app.example"})
    assert resp.header("Access-Control-Allow-Origin") == "*", resp.describe()
