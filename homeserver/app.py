"""aiohttp application factory: routes by resource, middlewares, one cleanup context per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from homeserver.api.admin import register as admin_register
from homeserver.api.admin import server as admin_server
from homeserver.api.admin import user_admin
from homeserver.api.admin import users as admin_users
from homeserver.api.client import (
    account,
    account_data,
    cross_signing,
    devices,
    directory,
    event_context,
    key_backup,
    keys,
    list_public_rooms,
    login,
    message_pagination,
    notifications,
    presence,
    profile,
    pusher,
    pushrules,
    read_markers,
    receipts,
    registration,
    relations,
    report_content,
    room_event_by_timestamp,
    room_upgrades,
    rooms,
    search,
    space_hierarchy,
    sync,
    tags,
    thirdparty,
    threads_list,
    to_device,
    typing,
    users,
    versions,
    voip,
)
from homeserver.api.media import authed_content_repo, content_repo
from homeserver.config.sections import HomeserverConfig
from homeserver.core.clock import Clock
from homeserver.http.auth import authenticate
from homeserver.http.middleware import json_response, matrix_middleware
from homeserver.http.routing import ApiRequest, JsonResponse, Route, Router
from homeserver.services.audit import set_request_origin

from .container import Services

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)

CLIENT_ROUTERS: tuple[Router, ...] = (
    versions.routes,
    registration.routes,
    login.routes,
    account.routes,
    devices.routes,
    profile.routes,
    admin_register.routes,
    user_admin.routes,
    admin_users.routes,
    admin_server.routes,
    rooms.routes,
    sync.routes,
    account_data.routes,
    directory.routes,
    list_public_rooms.routes,
    message_pagination.routes,
    event_context.routes,
    relations.routes,
    threads_list.routes,
    room_event_by_timestamp.routes,
    space_hierarchy.routes,
    pushrules.routes,
    notifications.routes,
    pusher.routes,
    keys.routes,
    cross_signing.routes,
    key_backup.routes,
    to_device.routes,
    thirdparty.routes,
    voip.routes,
    receipts.routes,
    read_markers.routes,
    typing.routes,
    presence.routes,
    tags.routes,
    search.routes,
    users.routes,
    room_upgrades.routes,
    report_content.routes,
)

# The media repository: authenticated /_matrix/client/v1/media and /_matrix/media (uploads, legacy).
MEDIA_ROUTERS: tuple[Router, ...] = (authed_content_repo.routes, content_repo.routes)

ALL_RESOURCES = ("client", "federation", "media", "metrics")

# Cap on JSON request bodies; media uploads stream past it.
DEFAULT_MAX_BODY = 10 * 1024 * 1024


def _wrap(route: Route) -> Any:
    handler = route.handler
    auth_kind = route.auth
    limit = route.ratelimit

    async def endpoint(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        set_request_origin(request.remote, request.headers.get("User-Agent"))
        api_request = ApiRequest(request, services, None)
        await authenticate(auth_kind, api_request)
        if limit is not None:
            services.check_route_ratelimit(limit, request.remote or "", api_request.requester)
        result = await handler(api_request)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, JsonResponse):
            return json_response(result.body, result.status, dict(result.headers or {}) or None)
        return json_response(result)

    endpoint.__name__ = route.name
    return endpoint


def add_routers(app: web.Application, routers: Iterable[Router]) -> None:
    for router in routers:
        for route in router.routes:
            wrapped = _wrap(route)
            for path in route.paths:
                app.router.add_route(route.method, path, wrapped)


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _build_app(config: HomeserverConfig, resources: Iterable[str]) -> web.Application:
    max_body = config.max_request_body_size or DEFAULT_MAX_BODY
    app = web.Application(middlewares=[matrix_middleware], client_max_size=max_body)
    names = set(resources)
    if "client" in names:
        add_routers(app, CLIENT_ROUTERS)
    if "media" in names and config.enable_media_repo:
        add_routers(app, MEDIA_ROUTERS)
    if "metrics" in names and config.enable_metrics:
        app.router.add_get("/metrics", metrics_handler)
        app.router.add_get("/_synapse/metrics", metrics_handler)
    return app


def create_app(services: Services, resources: Iterable[str] = ALL_RESOURCES) -> web.Application:
    """An application serving `resources` with already-built services (the CLI shares them
    between listeners)."""
    app = _build_app(services.config, resources)
    app[SERVICES] = services
    return app


def create_app_from_config(
    config: HomeserverConfig,
    *,
    clock: Clock | None = None,
    role: str = "main",
    resources: Iterable[str] = ALL_RESOURCES,
) -> web.Application:
    """An application that builds its own services on startup and closes them on cleanup."""

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        services = await Services.create(config, clock=clock, role=role)
        app[SERVICES] = services
        try:
            yield
        finally:
            await services.stop()

    app = _build_app(config, resources)
    app.cleanup_ctx.append(services_ctx)
    return app
