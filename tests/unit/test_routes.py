"""Route declarations: every rate-limit class a route names is wired in the container's table, and
no client route is served to other servers (federation routes come with their own routers)."""

from __future__ import annotations

from homeserver.app import CLIENT_ROUTERS, MEDIA_ROUTERS
from homeserver.container import ROUTE_RATE_LIMITS
from homeserver.http.auth import RESOLVERS
from homeserver.http.routing import Auth

ROUTES = [route for router in (*CLIENT_ROUTERS, *MEDIA_ROUTERS) for route in router.routes]


def test_every_declared_rate_limit_is_wired() -> None:
    declared = {route.ratelimit for route in ROUTES if route.ratelimit is not None}
    assert declared <= set(ROUTE_RATE_LIMITS), declared - set(ROUTE_RATE_LIMITS)


def test_every_auth_kind_has_a_resolver() -> None:
    assert set(RESOLVERS) == set(Auth)


def test_client_and_media_routes_take_no_server_auth() -> None:
    assert [r.name for r in ROUTES if r.auth is Auth.SERVER] == []
