"""Push delivery keys: Synapse's `push` and `email` sections (docs/push.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section

MINUTE = 60 * 1000


@dataclass(frozen=True, slots=True)
class PushConfig:
    enabled: bool = True  # deliver to pushers at all (Synapse's push.enabled)
    include_content: bool = True  # http pushers get the event content (unless event_id_only)
    group_unread_count_by_room: bool = True  # badge = rooms with unread notifications, not messages
    # Seconds one POST to a push gateway may take: long enough that a gateway's own retries to the
    # platform finish before we give up and send again (which would duplicate the notification).
    gateway_timeout: float = 90.0


@dataclass(frozen=True, slots=True)
class PushGatewayConfig:
    """`push_gateway:`: serve bridges/push_gateway from this process (one process for a small
    deployment). Its Sygnal-format settings come from `config_file` or inline (`apps:` ...)."""

    enabled: bool = False
    config_file: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EmailConfig:
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_pass: str | None = field(default=None, repr=False)
    require_transport_security: bool = False  # STARTTLS required
    force_tls: bool = False  # implicit TLS (port 465)
    enable_tls: bool = True  # use STARTTLS when the server offers it
    notif_from: str | None = None  # "%(app)s <noreply@example.org>"
    app_name: str = "Matrix"
    enable_notifs: bool = False
    notif_for_new_users: bool = True
    client_base_url: str = "https://matrix.to"
    # How long a notification waits unread before it is mailed (Synapse: 10 minutes).
    notif_delay: int = 10 * MINUTE

    @property
    def from_address(self) -> str:
        return (self.notif_from or "").replace("%(app)s", self.app_name)


def read_push(root: Section) -> PushConfig:
    sec = root.section("push")
    return PushConfig(
        enabled=sec.get_bool("enabled", True),
        include_content=sec.get_bool("include_content", True),
        group_unread_count_by_room=sec.get_bool("group_unread_count_by_room", True),
        gateway_timeout=sec.get_float("gateway_timeout", 90.0, minimum=1.0),
    )


def read_push_gateway(root: Section) -> PushGatewayConfig:
    sec = root.section("push_gateway")
    enabled = sec.get_bool("enabled", False)
    config_file = sec.get_opt_str("config_file")
    settings = {k: sec.raw(k) for k in sec.keys() if k not in ("enabled", "config_file")}
    if config_file is not None and settings:
        raise ConfigError("give the gateway's settings either inline or in config_file, not both", sec.path)
    return PushGatewayConfig(enabled=enabled, config_file=config_file, settings=settings)


def read_email(root: Section) -> EmailConfig:
    sec = root.section("email")
    enable_notifs = sec.get_bool("enable_notifs", False)
    notif_from = sec.get_opt_str("notif_from")
    if enable_notifs and not notif_from:
        raise ConfigError("email.notif_from is required when email.enable_notifs is true", sec.path)
    base_url = sec.get_opt_str("client_base_url") or sec.get_opt_str("riot_base_url") or "https://matrix.to"
    config = EmailConfig(
        smtp_host=sec.get_str("smtp_host", "localhost"),
        smtp_port=sec.get_int("smtp_port", 25, minimum=1, maximum=65535),
        smtp_user=sec.get_opt_str("smtp_user"),
        smtp_pass=sec.get_opt_str("smtp_pass"),
        require_transport_security=sec.get_bool("require_transport_security", False),
        force_tls=sec.get_bool("force_tls", False),
        enable_tls=sec.get_bool("enable_tls", True),
        notif_from=notif_from,
        app_name=sec.get_str("app_name", "Matrix"),
        enable_notifs=enable_notifs,
        notif_for_new_users=sec.get_bool("notif_for_new_users", True),
        client_base_url=base_url.rstrip("/"),
        notif_delay=sec.get_duration("notif_delay", 10 * MINUTE),
    )
    if config.force_tls and config.require_transport_security:
        raise ConfigError("email.force_tls and email.require_transport_security are exclusive", sec.path)
    return config
