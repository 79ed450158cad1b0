"""aiohttp application factory: routes by resource, middlewares, one cleanup context per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from homeserver.api.admin import background_updates as admin_background_updates
from homeserver.api.admin import compliance as admin_compliance
from homeserver.api.admin import federation as admin_federation
from homeserver.api.admin import media as admin_media
from homeserver.api.admin import register as admin_register
from homeserver.api.admin import rooms as admin_rooms
from homeserver.api.admin import server as admin_server
from homeserver.api.admin import server_notices as admin_server_notices
from homeserver.api.admin import user_admin
from homeserver.api.admin import users as admin_users
from homeserver.api.client import (
    account,
    account_data,
    appservice,
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
    openid,
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
    sliding_sync,
    space_hierarchy,
    sso,
    sync,
    tags,
    thirdparty,
    threads_list,
    to_device,
    typing,
    unsubscribe,
    users,
    versions,
    voip,
)
from homeserver.api.federation import backfill as federation_backfill
from homeserver.api.federation import event_auth as federation_event_auth
from homeserver.api.federation import events as federation_events
from homeserver.api.federation import keys as federation_keys
from homeserver.api.federation import media as federation_media
from homeserver.api.federation import membership as federation_membership
from homeserver.api.federation import openid as federation_openid
from homeserver.api.federation import public_rooms as federation_public_rooms
from homeserver.api.federation import query as federation_query
from homeserver.api.federation import send as federation_send
from homeserver.api.federation import space_hierarchy as federation_space_hierarchy
from homeserver.api.federation import user_keys as federation_user_keys
from homeserver.api.federation import version as federation_version
from homeserver.api.media import authed_content_repo, content_repo
from homeserver.api.replication import internal as replication_internal
from homeserver.config.errors import ConfigError
from homeserver.config.sections import HomeserverConfig, ListenerConfig
from homeserver.core.clock import Clock
from homeserver.core.errors import MatrixError
from homeserver.http.auth import authenticate, extract_access_token
from homeserver.http.forward import forward_to_main
from homeserver.http.forwarded import forwarded_middleware
from homeserver.http.limits import check_declared_length, expect_handler
from homeserver.http.metrics import note_client
from homeserver.http.middleware import json_response, matrix_middleware
from homeserver.http.params import check_path_and_query
from homeserver.http.routing import ApiRequest, JsonResponse, Route, Router
from homeserver.http.websocket.connection import wants_websocket
from homeserver.replication.roles import ROLE_SPECS, RoleSpec, serves_locally
from homeserver.services.audit import set_request_origin

from .container import Services

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)

CLIENT_ROUTERS: tuple[Router, ...] = (
    versions.routes,
    appservice.routes,
    registration.routes,
    login.routes,
    sso.routes,
    account.routes,
    devices.routes,
    profile.routes,
    admin_register.routes,
    admin_compliance.routes,
    user_admin.routes,
    admin_rooms.routes,
    admin_media.routes,
    admin_server_notices.routes,
    admin_background_updates.routes,
    admin_users.routes,
    admin_server.routes,
    admin_federation.routes,
    rooms.routes,
    sync.routes,
    sliding_sync.routes,
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
    openid.routes,
    unsubscribe.routes,
)

# The media repository: authenticated /_matrix/client/v1/media and /_matrix/media (uploads, legacy).
MEDIA_ROUTERS: tuple[Router, ...] = (authed_content_repo.routes, content_repo.routes)

# The server-server API; as in Synapse, the `federation` resource also serves /_matrix/key/v2.
FEDERATION_ROUTERS: tuple[Router, ...] = (
    federation_version.routes,
    federation_query.routes,
    federation_membership.routes,
    federation_send.routes,
    # history, state and room reads (docs/federation.md, "What other servers can read")
    federation_backfill.routes,
    federation_events.routes,
    federation_event_auth.routes,
    federation_public_rooms.routes,
    federation_space_hierarchy.routes,
    federation_user_keys.routes,
)
KEY_ROUTERS: tuple[Router, ...] = (federation_keys.routes,)
# Main's internal API for its workers (`replication` listener resource).
REPLICATION_ROUTERS: tuple[Router, ...] = (replication_internal.routes,)
# /_matrix/federation/v1/openid/userinfo: with `federation`, or alone under `openid` (as Synapse).
OPENID_ROUTERS: tuple[Router, ...] = (federation_openid.routes,)
# Served with `federation` when the media repository is enabled.
FEDERATION_MEDIA_ROUTERS: tuple[Router, ...] = (federation_media.routes,)

ALL_RESOURCES = ("client", "federation", "media", "metrics")

# Cap on JSON request bodies; media uploads stream past it.
DEFAULT_MAX_BODY = 10 * 1024 * 1024


def _token_or_none(request: web.Request) -> str | None:
    try:
        return extract_access_token(request)
    except MatrixError:  # a malformed header: authentication (if the route has any) said so already
        return None


def _wrap(route: Route, body_limit: int) -> Any:
    handler = route.handler
    auth_kind = route.auth
    limit = route.ratelimit
    websocket = route.websocket

    async def endpoint(request: web.Request) -> web.StreamResponse:
        if websocket is not None and wants_websocket(request):
            result = await websocket(ApiRequest(request, request.app[SERVICES], None))
            assert isinstance(result, web.StreamResponse)
            return result
        # Refuse a declared oversized body before reading any of it.
        check_declared_length(request, body_limit)
        services = request.app[SERVICES]
        set_request_origin(request.remote, request.headers.get("User-Agent"))
        api_request = ApiRequest(request, services, None)
        await authenticate(auth_kind, api_request)
        if api_request.requester is not None:
            services.client_ips.record(
                api_request.requester, request.remote, request.headers.get("User-Agent")
            )
        note_client(request.remote, api_request.requester.user_id if api_request.requester else None)
        if limit is not None:
            services.check_route_ratelimit(
                limit, request.remote or "", api_request.requester, _token_or_none(request)
            )
        check_path_and_query(request.match_info, request.query.items())
        if api_request.server is not None:
            async with services.federation_ratelimiter.ratelimit(api_request.server.server_name):
                result = await handler(api_request)
        else:
            result = await handler(api_request)
        if isinstance(result, web.StreamResponse):
            return result
        if isinstance(result, JsonResponse):
            return json_response(result.body, result.status, dict(result.headers or {}) or None)
        return json_response(result)

    endpoint.__name__ = route.name
    return endpoint


def add_routers(
    app: web.Application,
    routers: Iterable[Router],
    body_limit: int = DEFAULT_MAX_BODY,
    *,
    role: RoleSpec | None = None,
    kind: str = "client",
) -> None:
    """Mount the routers' routes; on a worker (`role`), the ones it does not serve itself are
    forwarded to main or left out (404 M_UNRECOGNIZED), as replication/roles.py says."""
    expect = expect_handler(body_limit)
    for router in routers:
        for route in router.routes:
            local = True if role is None else serves_locally(role, route.method, route.name, kind)
            if local is None:
                continue
            wrapped = _wrap(route, body_limit) if local else _forward
            for path in route.paths:
                app.router.add_route(route.method, path, wrapped, expect_handler=expect)


async def _forward(request: web.Request) -> web.StreamResponse:
    main = request.app[SERVICES].main_client
    if main is None:  # cannot happen: only workers mount this handler
        raise MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request")
    return await forward_to_main(request, main.session, main.base)


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health_handler(request: web.Request) -> web.Response:
    # Synapse's answer, byte for byte: load balancers and Docker HEALTHCHECKs match on it.
    return web.Response(text="OK")


def served_resources(config: HomeserverConfig, resources: Iterable[str]) -> tuple[str, ...]:
    """The listed resources this process really serves (the start-up line shows these).

    `health` is served on every listener, as Synapse does; `openid` (the OpenID userinfo
    endpoint) comes with `federation` too; `replication` is accepted in the config but has no
    endpoints yet.
    """
    names = set(resources)
    served = []
    if "client" in names:
        served.append("client")
    if "federation" in names:
        served.append("federation")
    if "keys" in names or "federation" in names:
        served.append("keys")
    if "openid" in names or "federation" in names:
        served.append("openid")
    if "media" in names and config.enable_media_repo:
        served.append("media")
    if "metrics" in names and config.enable_metrics:
        served.append("metrics")
    if "replication" in names and config.workers.is_main:
        served.append("replication")
    served.append("health")
    return tuple(served)


def _mount_push_gateway(app: web.Application, config: HomeserverConfig) -> None:
    """bridges/push_gateway in this process (`push_gateway.enabled`): /_matrix/push/v1/notify is
    served next to the client API. The gateway never imports the homeserver; only this does."""
    from bridges.push_gateway import config as gateway_config
    from bridges.push_gateway.server import mount

    settings = config.push_gateway
    try:
        if settings.config_file is not None:
            parsed = gateway_config.load_config(settings.config_file)
        else:
            parsed = gateway_config.parse_config(dict(settings.settings))
    except gateway_config.ConfigError as exc:
        raise ConfigError(str(exc), "push_gateway") from exc
    mount(app, parsed)


def _build_app(
    config: HomeserverConfig, resources: Iterable[str], listener: ListenerConfig | None = None
) -> web.Application:
    max_body = config.max_request_body_size or DEFAULT_MAX_BODY
    middlewares: list[Any] = [matrix_middleware]
    if listener is not None and listener.x_forwarded:
        # Outermost, so that errors, metrics, rate limits and last-seen see the client's address.
        middlewares.insert(0, forwarded_middleware(listener.trusted_proxies))
    app = web.Application(middlewares=middlewares, client_max_size=max_body)
    served = served_resources(config, resources)
    # Workers serve their role's share (docs/scale-out.md); main and the embedded server all.
    role = None if config.workers.is_main else ROLE_SPECS[config.workers.role]
    if "client" in served:
        add_routers(app, CLIENT_ROUTERS, max_body, role=role)
    if "federation" in served:
        add_routers(app, FEDERATION_ROUTERS, max_body, role=role, kind="federation")
        if config.enable_media_repo:
            add_routers(app, FEDERATION_MEDIA_ROUTERS, max_body, role=role, kind="federation")
    if "keys" in served:
        add_routers(app, KEY_ROUTERS, max_body)
    if "openid" in served:
        add_routers(app, OPENID_ROUTERS, max_body)
    if "replication" in served:
        add_routers(app, REPLICATION_ROUTERS, max_body)
    if "media" in served and (role is None or role.media):
        # Uploads stream to disk; the media repository enforces max_upload_size precisely.
        upload_limit = config.max_upload_size or max_body
        add_routers(app, MEDIA_ROUTERS, max(upload_limit, max_body))
    if "client" in served and config.push_gateway.enabled:
        _mount_push_gateway(app, config)
    if "metrics" in served:
        app.router.add_get("/metrics", metrics_handler)
        app.router.add_get("/_synapse/metrics", metrics_handler)
    app.router.add_get("/health", health_handler)
    if "client" in served:
        app.on_shutdown.append(_close_live_connections)
    return app


async def _close_live_connections(app: web.Application) -> None:
    """Shutdown: close WebSocket syncs with 1001 (clients resume from their last token)."""
    services = app.get(SERVICES)
    if services is not None:
        await services.live_sync.shutdown_all()


def create_app(
    services: Services, resources: Iterable[str] = ALL_RESOURCES, listener: ListenerConfig | None = None
) -> web.Application:
    """An application serving `resources` with already-built services (the CLI shares them
    between listeners). `listener` brings its `x_forwarded` setting."""
    app = _build_app(services.config, resources, listener)
    app[SERVICES] = services
    return app


def create_app_from_config(
    config: HomeserverConfig,
    *,
    clock: Clock | None = None,
    role: str = "main",
    resources: Iterable[str] = ALL_RESOURCES,
    listener: ListenerConfig | None = None,
) -> web.Application:
    """An application that builds its own services on startup and closes them on cleanup."""

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        services = await Services.create(config, clock=clock, role=role)
        app[SERVICES] = services
        try:
            yield
        finally:
            await services.stop()

    app = _build_app(config, resources, listener)
    app.cleanup_ctx.append(services_ctx)
    return app
