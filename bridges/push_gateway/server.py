"""The Push Gateway API (``POST /_matrix/push/v1/notify``) as an aiohttp application.

Standalone: :func:`create_app` (used by ``python -m bridges.push_gateway``). Embedded: call
:func:`mount` on the homeserver's application so a small deployment runs one process; the
gateway then shares the event loop but keeps its own pushkins and HTTP clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from aiohttp import web

from .config import ConfigError, GatewayConfig
from .metrics import (
    DEVICES_RECEIVED,
    HTTP_RESPONSES,
    NOTIFS_RECEIVED,
    NOTIFY_TIME,
    PER_PUSHKIN,
    REQUESTS_IN_FLIGHT,
)
from .notification import InvalidNotification, Notification
from .pushkins.base import DispatchError, Pushkin, redact_pushkey

logger = logging.getLogger("bridges.push_gateway")

# Sygnal's limit for a notify body.
MAX_REQUEST_SIZE = 512 * 1024

PUSHKINS_KEY: web.AppKey[list[Pushkin]] = web.AppKey("push_gateway_pushkins", list)


def build_pushkins(config: GatewayConfig) -> list[Pushkin]:
    """Instantiate every configured app; a bad key raises ConfigError naming it."""
    from .pushkins.apns import ApnsPushkin
    from .pushkins.fcm import FcmPushkin
    from .pushkins.webpush import WebpushPushkin

    kinds: dict[str, type[Pushkin]] = {
        "webpush": WebpushPushkin,
        "fcm": FcmPushkin,
        "gcm": FcmPushkin,
        "apns": ApnsPushkin,
    }
    pushkins = []
    for app_id, cfg in config.apps.items():
        cls = kinds.get(cfg["type"])
        if cls is None:  # parse_config already checked; keep the message if called directly
            raise ConfigError(f"apps.{app_id}.type: unknown pushkin type {cfg['type']!r}")
        pushkins.append(cls(app_id, cfg, config.proxy))
    return pushkins


def find_pushkins(pushkins: list[Pushkin], app_id: str) -> list[Pushkin]:
    """An exact app id wins; otherwise every app whose glob matches (more than one is ambiguous)."""
    exact = [p for p in pushkins if p.name == app_id]
    return exact or [p for p in pushkins if p.handles(app_id)]


def _error(status: int, errcode: str, message: str) -> web.Response:
    # Sygnal answers a bare text message; the Matrix error shape keeps that text in `error`.
    return web.json_response({"errcode": errcode, "error": message}, status=status)


async def _dispatch_one(pushkins: list[Pushkin], n: Notification, index: int, request_id: str) -> list[str]:
    device = n.devices[index]
    DEVICES_RECEIVED.inc()
    found = find_pushkins(pushkins, device.app_id)
    if len(found) != 1:
        logger.warning(
            "[%s] %s app id %s: rejecting %s",
            request_id,
            "unknown" if not found else "ambiguous",
            device.app_id,
            redact_pushkey(device.pushkey),
        )
        return [device.pushkey]
    pushkin = found[0]
    PER_PUSHKIN.labels(pushkin.name).inc()
    return await pushkin.dispatch(n, device, request_id)


async def notify(request: web.Request) -> web.Response:
    start = time.perf_counter()
    # A caller's X-Request-ID (e.g. from a reverse proxy) ties log lines together across hops.
    request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex[:16]
    with REQUESTS_IN_FLIGHT.labels("V1NotifyHandler").track_inprogress():
        response = await _notify(request, request_id)
    HTTP_RESPONSES.labels(code=response.status).inc()
    NOTIFY_TIME.labels(code=response.status).observe(max(0.0, time.perf_counter() - start))
    return response


async def _notify(request: web.Request, request_id: str) -> web.Response:
    try:
        body: Any = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        logger.warning("[%s] notify: body is not JSON", request_id)
        return _error(400, "M_NOT_JSON", "Expected JSON request body")
    if not isinstance(body, dict) or not isinstance(body.get("notification"), dict):
        logger.warning("[%s] notify: no notification object", request_id)
        return _error(400, "M_BAD_JSON", "Invalid notification: expecting object in 'notification' key")
    try:
        n = Notification.parse(body["notification"])
    except InvalidNotification as exc:
        logger.warning("[%s] notify: invalid notification: %s", request_id, exc)
        return _error(400, "M_BAD_JSON", str(exc))
    NOTIFS_RECEIVED.inc()
    if not n.devices:
        logger.warning("[%s] notify: no devices", request_id)
        return _error(400, "M_BAD_JSON", "No devices in notification")

    pushkins = request.app[PUSHKINS_KEY]
    # Only ids, never content, go to the log.
    logger.info(
        "[%s] notify event=%s room=%s devices=%d has_content=%s",
        request_id,
        n.event_id,
        n.room_id,
        len(n.devices),
        n.content is not None,
    )
    results = await asyncio.gather(
        *(_dispatch_one(pushkins, n, i, request_id) for i in range(len(n.devices))), return_exceptions=True
    )
    rejected: list[str] = []
    failed = False
    for result in results:
        if isinstance(result, DispatchError):
            logger.warning("[%s] dispatch failed: %s", request_id, result)
            failed = True
        elif isinstance(result, BaseException):
            logger.error("[%s] dispatch error", request_id, exc_info=result)
            return _error(500, "M_UNKNOWN", "Internal error while dispatching the notification")
        else:
            rejected.extend(result)
    if failed:
        # Sygnal's answer when a push service could not be reached: the homeserver retries later.
        return _error(502, "M_UNKNOWN", "Failed to dispatch notification")
    if rejected:
        logger.info("[%s] delivered with %d rejected pushkeys", request_id, len(rejected))
    return web.json_response({"rejected": rejected})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="")


def _gateway_subapp(config: GatewayConfig, pushkins: list[Pushkin] | None) -> web.Application:
    sub = web.Application(client_max_size=MAX_REQUEST_SIZE)
    sub[PUSHKINS_KEY] = pushkins if pushkins is not None else build_pushkins(config)
    sub.router.add_post("/v1/notify", notify)

    async def on_startup(app: web.Application) -> None:
        for pushkin in app[PUSHKINS_KEY]:
            await pushkin.start()
        logger.info(
            "push gateway ready with apps: %s", ", ".join(p.name for p in app[PUSHKINS_KEY]) or "none"
        )

    async def on_cleanup(app: web.Application) -> None:
        for pushkin in app[PUSHKINS_KEY]:
            await pushkin.close()

    sub.on_startup.append(on_startup)
    sub.on_cleanup.append(on_cleanup)
    return sub


def mount(
    parent: web.Application, config: GatewayConfig, pushkins: list[Pushkin] | None = None
) -> web.Application:
    """Serve the gateway's ``/_matrix/push/`` routes from ``parent`` (the embedded mode)."""
    sub = _gateway_subapp(config, pushkins)
    parent.add_subapp("/_matrix/push", sub)
    return sub


def create_app(config: GatewayConfig, pushkins: list[Pushkin] | None = None) -> web.Application:
    """The standalone gateway: the notify API plus Sygnal's ``/health``."""
    app = web.Application(client_max_size=MAX_REQUEST_SIZE)
    app.router.add_get("/health", health)
    mount(app, config, pushkins)
    return app
