"""Sygnal's configuration file format (``sygnal.yaml``), so operators can switch gateways.

Recognised top-level sections: ``log`` (``setup``: a logging dictConfig; ``access``), ``http``
(``bind_addresses``, ``port``), ``proxy``, ``metrics.prometheus`` (``enabled``, ``address``,
``port``) and ``apps`` (keyed by app id, glob patterns allowed, each with a ``type``). Sections
Sygnal has but this gateway does not implement (OpenTracing, Sentry) are accepted and ignored with
a warning so a Sygnal file loads unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

# Sygnal's type names; `gcm` is Sygnal's name for its FCM pushkin, `fcm` is accepted as an alias.
PUSHKIN_TYPES = ("webpush", "fcm", "gcm", "apns")


class ConfigError(Exception):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class GatewayConfig:
    bind_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 5000
    log_setup: dict[str, Any] | None = None
    x_forwarded_for: bool = False
    proxy: str | None = None
    prometheus_enabled: bool = False
    prometheus_address: str = "127.0.0.1"
    prometheus_port: int = 8000
    # app id (or glob pattern) -> that app's raw section; each pushkin validates its own keys.
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key}: expected a mapping")
    return value


def _typed(raw: dict[str, Any], key: str, type_: type | tuple[type, ...], default: Any, where: str) -> Any:
    if raw.get(key) is None:
        return default
    value = raw[key]
    if not isinstance(value, type_) or (type_ is int and isinstance(value, bool)):
        name = type_.__name__ if isinstance(type_, type) else " or ".join(t.__name__ for t in type_)
        raise ConfigError(f"{where}{key}: expected {name}, got {type(value).__name__}")
    return value


def parse_config(raw: Any) -> GatewayConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration file must be a mapping")
    log = _section(raw, "log", "")
    setup = log.get("setup")
    if setup is not None and not isinstance(setup, dict):
        raise ConfigError("log.setup: expected a logging dictConfig mapping")
    access = _section(log, "access", "log.")
    http = _section(raw, "http", "")
    bind = _typed(http, "bind_addresses", list, ["127.0.0.1"], "http.")
    if not bind or not all(isinstance(a, str) for a in bind):
        raise ConfigError("http.bind_addresses: expected a non-empty list of addresses")
    port = _typed(http, "port", int, 5000, "http.")
    metrics = _section(raw, "metrics", "")
    prom = _section(metrics, "prometheus", "metrics.")
    for unsupported in ("opentracing", "sentry"):
        if _section(metrics, unsupported, "metrics.").get("enabled"):
            logger.warning("metrics.%s is not supported by this gateway; ignoring it", unsupported)
    for legacy in ("db", "database"):
        if raw.get(legacy) is not None:
            logger.warning("the legacy '%s' option is ignored: the gateway has no database", legacy)
    apps_raw = _section(raw, "apps", "")
    apps: dict[str, dict[str, Any]] = {}
    for app_id, app in apps_raw.items():
        where = f"apps.{app_id}"
        if not isinstance(app, dict):
            raise ConfigError(f"{where}: expected a mapping")
        app_type = app.get("type")
        if not isinstance(app_type, str) or not app_type:
            raise ConfigError(f"{where}.type: missing (one of {', '.join(PUSHKIN_TYPES)})")
        if app_type not in PUSHKIN_TYPES:
            raise ConfigError(
                f"{where}.type: unknown pushkin type {app_type!r} (one of {', '.join(PUSHKIN_TYPES)})"
            )
        limit = app.get("inflight_request_limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ConfigError(f"{where}.inflight_request_limit: expected a positive integer")
        apps[str(app_id)] = app
    proxy = _typed(raw, "proxy", str, None, "")
    return GatewayConfig(
        bind_addresses=list(bind),
        port=port,
        log_setup=setup,
        x_forwarded_for=bool(access.get("x_forwarded_for", False)),
        proxy=proxy,
        prometheus_enabled=bool(prom.get("enabled", False)),
        prometheus_address=_typed(prom, "address", str, "127.0.0.1", "metrics.prometheus."),
        prometheus_port=_typed(prom, "port", int, 8000, "metrics.prometheus."),
        apps=apps,
    )


def load_config(path: str | Path) -> GatewayConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    return parse_config(raw)
