"""Server discovery and capabilities: /versions, /.well-known/matrix/client, /capabilities."""

from __future__ import annotations

import re

from .client import V3
from .harness import Homeserver, User
from .spec_schema import assert_error, assert_matches_spec, assert_response_matches_spec

VERSION_RE = re.compile(r"^(r\d+\.\d+\.\d+|v\d+\.\d+)$")


def test_versions(hs: Homeserver) -> None:
    resp = hs.client().get("/_matrix/client/versions")
    body = assert_response_matches_spec(resp, "versions.yaml", "/_matrix/client/versions")
    assert body["versions"], "no spec versions advertised"
    for version in body["versions"]:
        assert VERSION_RE.match(version), f"bad version string {version!r}"
    for feature, enabled in body.get("unstable_features", {}).items():
        assert isinstance(enabled, bool), f"unstable feature {feature} is not a boolean"
    assert (resp.header("Content-Type") or "").startswith("application/json")


def test_versions_with_access_token(hs: Homeserver, user: User) -> None:
    # The spec allows (but does not require) authentication on /versions.
    resp = user.client.get("/_matrix/client/versions")
    assert_response_matches_spec(resp, "versions.yaml", "/_matrix/client/versions")


def test_wellknown_client(hs: Homeserver) -> None:
    resp = hs.client().get("/.well-known/matrix/client")
    if resp.status == 404:
        # Allowed: a server without a configured public base URL (Synapse's default) has no
        # discovery document to serve.
        assert_matches_spec("wellknown.yaml", "/matrix/client", "GET", 404, resp.body)
        if resp.body is not None:
            assert_error(resp, 404, "M_NOT_FOUND")
        return
    body = assert_response_matches_spec(resp, "wellknown.yaml", "/matrix/client")
    assert body["m.homeserver"]["base_url"].startswith(("http://", "https://"))


def test_capabilities_requires_token(hs: Homeserver) -> None:
    assert_error(hs.client().get(f"{V3}/capabilities"), 401, "M_MISSING_TOKEN")


def test_capabilities(user: User) -> None:
    resp = user.client.get(f"{V3}/capabilities")
    body = assert_response_matches_spec(resp, "capabilities.yaml", "/capabilities")
    caps = body["capabilities"]
    assert isinstance(caps, dict)
    if "m.room_versions" in caps:
        rv = caps["m.room_versions"]
        assert rv["default"] in rv["available"], f"default room version not available: {rv}"
        for state in rv["available"].values():
            assert state in ("stable", "unstable")
    if "m.change_password" in caps:
        assert isinstance(caps["m.change_password"]["enabled"], bool)
