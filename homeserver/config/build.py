"""Turn the raw (merged, env-overridden) mapping into a validated `HomeserverConfig`."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from homeserver.config import defaults as d
from homeserver.config.auth_modules import read_auth_modules
from homeserver.config.compliance import read_compliance
from homeserver.config.database import read_database, read_redis, read_secret_file
from homeserver.config.errors import ConfigError
from homeserver.config.federation import read_federation_config
from homeserver.config.listeners import derive_public_baseurl, normalise_public_baseurl, read_listeners
from homeserver.config.lists import read_ip_ranges, read_rules, read_thumbnail_sizes, read_trusted_key_servers
from homeserver.config.media import read_media_options
from homeserver.config.moderation import read_room_creation, read_word_filter
from homeserver.config.oidc import read_login_via_existing_session, read_oidc_providers, read_sso
from homeserver.config.parsing import Section, join_path
from homeserver.config.push import read_email, read_push, read_push_gateway
from homeserver.config.ratelimits import (
    read_federation,
    read_invites,
    read_joins,
    read_login,
    read_optional_rate_limit,
    read_presence,
    read_rate_limit,
)
from homeserver.config.sections import (
    HomeserverConfig,
    RoomDirectoryRule,
    ServerNoticesConfig,
    TurnConfig,
    UserDirectoryConfig,
)
from homeserver.config.workers import read_workers
from homeserver.core.ids import is_valid_room_alias, is_valid_room_id, is_valid_server_name

# Old Synapse spellings still read, but not written by generate_config_yaml.
LEGACY_KEYS = frozenset(
    {
        "database_path",
        "disable_registration",
        "use_presence",
        "metrics_port",
        "metrics_bind_host",
        "worker_name",
    }
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENCRYPTION_ROOM_TYPES = ("all", "invite", "off")
OPEN_REGISTRATION_ERROR = (
    "open registration without any verification lets anyone create accounts (spam, abuse); "
    "also set `registration_requires_token: true`, or `enable_registration_without_verification: true` "
    "if you really want this"
)


def build_config(raw: Mapping[str, Any], config_files: tuple[str, ...] = ()) -> HomeserverConfig:
    """Validate `raw` (Synapse-shaped) into a config; raises ConfigError naming the key path."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the configuration must be a mapping of keys to values, got {type(raw).__name__}")
    return _build(Section(raw), raw, config_files)


def _build(root: Section, raw: Mapping[str, Any], config_files: tuple[str, ...]) -> HomeserverConfig:
    unsupported: list[str] = []

    server_name = root.get_str("server_name", d.DEFAULT_SERVER_NAME)
    if not is_valid_server_name(server_name):
        raise root.error("server_name", "a server name such as example.com or localhost:8448", server_name)
    data_dir = root.get_str("data_dir", d.DEFAULT_DATA_DIR)
    listeners = read_listeners(root, unsupported)
    explicit_baseurl = root.get_opt_str("public_baseurl")
    public_baseurl = (
        normalise_public_baseurl(explicit_baseurl)
        if explicit_baseurl
        else derive_public_baseurl(server_name, listeners)
    )
    log_config = root.get_opt_str("log_config")
    if log_config and not os.path.isfile(log_config):
        raise ConfigError(f"no such file: {log_config!r}", "log_config")
    default_room_version = root.get_str("default_room_version", d.DEFAULT_ROOM_VERSION)
    if default_room_version not in d.KNOWN_ROOM_VERSIONS:
        raise root.error(
            "default_room_version",
            "a known room version (" + ", ".join(sorted(d.KNOWN_ROOM_VERSIONS, key=int)) + ")",
            root.raw("default_room_version"),
        )
    instance_name = root.get_opt_str("instance_name") or root.get_opt_str("worker_name") or "main"
    root.mark_read("worker_name")

    registration = _registration(root)
    lifetimes = _lifetimes(root)
    presence = _presence_enabled(root)

    config = HomeserverConfig(
        server_name=server_name,
        public_baseurl=public_baseurl,
        serve_client_wellknown=bool(explicit_baseurl),
        serve_server_wellknown=root.get_bool("serve_server_wellknown", False),
        data_dir=data_dir,
        pid_file=root.get_opt_str("pid_file"),
        soft_file_limit=root.get_int("soft_file_limit", 0, minimum=0),
        instance_name=instance_name,
        signing_key_path=root.get_str("signing_key_path", f"{data_dir}/{server_name}.signing.key"),
        key_refresh_interval=root.get_duration("key_refresh_interval", 24 * 3600 * 1000),
        trusted_key_servers=read_trusted_key_servers(root),
        admin_contact=root.get_opt_str("admin_contact"),
        default_room_version=default_room_version,
        log_level=_log_level(root),
        log_config=log_config,
        listeners=listeners,
        enable_metrics=root.get_bool("enable_metrics", False),
        max_request_body_size=_positive_size(root, "max_request_body_size", d.DEFAULT_MAX_REQUEST_BODY_SIZE),
        ip_range_blacklist=read_ip_ranges(
            root, "ip_range_blacklist", d.DEFAULT_IP_RANGE_BLACKLIST, d.ALWAYS_BLOCKED
        ),
        ip_range_whitelist=read_ip_ranges(root, "ip_range_whitelist", ()),
        federation_domain_whitelist=(
            root.get_str_list("federation_domain_whitelist")
            if root.has("federation_domain_whitelist")
            else None
        ),
        federation=read_federation_config(root, listeners),
        database=read_database(root, data_dir),
        redis=read_redis(root),
        enable_registration=registration["enable_registration"],
        enable_registration_without_verification=registration["enable_registration_without_verification"],
        registration_requires_token=registration["registration_requires_token"],
        registration_shared_secret=_shared_secret(root),
        registration_shared_secret_path=root.get_opt_str("registration_shared_secret_path"),
        allow_guest_access=root.get_bool("allow_guest_access", False),
        bcrypt_rounds=root.get_int("bcrypt_rounds", 12, minimum=4, maximum=31),
        auto_join_rooms=_auto_join_rooms(root),
        enable_set_displayname=root.get_bool("enable_set_displayname", True),
        enable_set_avatar_url=root.get_bool("enable_set_avatar_url", True),
        session_lifetime=lifetimes["session_lifetime"],
        refreshable_access_token_lifetime=lifetimes["refreshable_access_token_lifetime"],
        nonrefreshable_access_token_lifetime=lifetimes["nonrefreshable_access_token_lifetime"],
        refresh_token_lifetime=lifetimes["refresh_token_lifetime"],
        rc_message=read_rate_limit(root, "rc_message", d.RC_MESSAGE),
        rc_registration=read_rate_limit(root, "rc_registration", d.RC_REGISTRATION),
        rc_registration_token_validity=read_rate_limit(
            root, "rc_registration_token_validity", d.RC_REGISTRATION_TOKEN_VALIDITY
        ),
        rc_login=read_login(root),
        rc_joins=read_joins(root),
        rc_joins_per_room=read_rate_limit(root, "rc_joins_per_room", d.RC_JOINS_PER_ROOM),
        rc_invites=read_invites(root),
        rc_room_creation=read_rate_limit(root, "rc_room_creation", d.RC_ROOM_CREATION),
        rc_media_create=read_rate_limit(root, "rc_media_create", d.RC_MEDIA_CREATE),
        rc_key_requests=read_rate_limit(root, "rc_key_requests", d.RC_KEY_REQUESTS),
        rc_presence=read_presence(root),
        rc_reports=read_rate_limit(root, "rc_reports", d.RC_REPORTS),
        rc_user_directory=read_rate_limit(root, "rc_user_directory", d.RC_USER_DIRECTORY),
        rc_delayed_event_mgmt=read_rate_limit(root, "rc_delayed_event_mgmt", d.RC_DELAYED_EVENT_MGMT),
        rc_admin_redaction=read_optional_rate_limit(root, "rc_admin_redaction", d.RC_ADMIN_REDACTION),
        rc_federation=read_federation(root),
        enable_media_repo=root.get_bool("enable_media_repo", True),
        enable_authenticated_media=root.get_bool("enable_authenticated_media", True),
        media_store_path=root.get_str("media_store_path", f"{data_dir}/media_store"),
        max_upload_size=_positive_size(root, "max_upload_size", d.DEFAULT_MAX_UPLOAD_SIZE),
        max_image_pixels=_positive_size(root, "max_image_pixels", d.DEFAULT_MAX_IMAGE_PIXELS),
        dynamic_thumbnails=root.get_bool("dynamic_thumbnails", False),
        thumbnail_sizes=read_thumbnail_sizes(root, d.DEFAULT_THUMBNAIL_SIZES),
        url_preview_enabled=root.get_bool("url_preview_enabled", False),
        url_preview_ip_range_blacklist=read_ip_ranges(
            root, "url_preview_ip_range_blacklist", d.DEFAULT_IP_RANGE_BLACKLIST, d.ALWAYS_BLOCKED
        ),
        url_preview_ip_range_whitelist=read_ip_ranges(root, "url_preview_ip_range_whitelist", ()),
        media=read_media_options(root),
        encryption_enabled_by_default_for_room_type=_encryption_room_type(root),
        room_list_publication_rules=read_rules(root, "room_list_publication_rules", ()),
        alias_creation_rules=read_rules(root, "alias_creation_rules", (RoomDirectoryRule("allow"),)),
        enable_room_list_search=root.get_bool("enable_room_list_search", True),
        allow_public_rooms_without_auth=root.get_bool("allow_public_rooms_without_auth", True),
        allow_public_rooms_over_federation=root.get_bool("allow_public_rooms_over_federation", False),
        block_non_admin_invites=root.get_bool("block_non_admin_invites", False),
        enable_search=root.get_bool("enable_search", True),
        filter_timeline_limit=root.get_int("filter_timeline_limit", 100, minimum=1),
        forget_rooms_on_leave=root.get_bool("forget_rooms_on_leave", False),
        redaction_retention_period=_nullable_duration(
            root, "redaction_retention_period", 7 * 24 * 3600 * 1000
        ),
        user_ips_max_age=_nullable_duration(root, "user_ips_max_age", 28 * 24 * 3600 * 1000),
        audit_log_retention_period=root.get_opt_duration("audit_log_retention_period"),
        audit_log_admin_room_reads=root.get_bool("audit_log_admin_room_reads", False),
        user_directory=_user_directory(root),
        presence_enabled=presence,
        require_auth_for_profile_requests=root.get_bool("require_auth_for_profile_requests", False),
        limit_profile_requests_to_users_who_share_rooms=root.get_bool(
            "limit_profile_requests_to_users_who_share_rooms", False
        ),
        word_filter=read_word_filter(root),
        room_creation=read_room_creation(root),
        require_membership_for_aliases=root.get_bool("require_membership_for_aliases", True),
        app_service_config_files=root.get_str_list("app_service_config_files"),
        turn=_turn(root),
        config_files=config_files,
        unknown_keys=(),
        extras=MappingProxyType(copy.deepcopy(dict(raw))),
        server_notices=_server_notices(root),
        compliance=read_compliance(root),
        ldap=read_auth_modules(root, unsupported),
        oidc_providers=read_oidc_providers(root),
        sso=read_sso(root),
        login_via_existing_session=read_login_via_existing_session(root),
        push=read_push(root),
        email=read_email(root),
        push_gateway=read_push_gateway(root),
        workers=read_workers(root),
    )
    unknown = root.unread_paths(d.IGNORED_KEYS) + unsupported
    return dataclasses.replace(config, unknown_keys=tuple(sorted(unknown)))


def supported_keys() -> frozenset[str]:
    """Every top-level key the builder reads (for docs and the generated-config test)."""
    root = Section({})
    _build(root, {}, ())
    return root.read_keys()


# -- small section readers -------------------------------------------------------------------


def _log_level(root: Section) -> str:
    value = root.get_str("log_level", "INFO")
    upper = value.upper()
    if upper == "WARN":
        upper = "WARNING"
    if upper not in LOG_LEVELS:
        raise root.error("log_level", "one of " + ", ".join(LOG_LEVELS), value)
    return upper


def _positive_size(root: Section, key: str, default: int) -> int:
    size = root.get_size(key, default)
    if size <= 0:
        raise root.error(key, "a size greater than zero", root.raw(key))
    return size


def _nullable_duration(root: Section, key: str, default: int) -> int | None:
    """A duration whose explicit `null` means "forever" (Synapse's convention)."""
    if root.is_explicit_null(key):
        return None
    return root.get_duration(key, default)


def _registration(root: Section) -> dict[str, bool]:
    enabled = root.get_bool("enable_registration", False)
    if root.has("disable_registration"):  # Synapse's legacy inverse spelling
        enabled = not root.get_bool("disable_registration", True)
    without_verification = root.get_bool("enable_registration_without_verification", False)
    requires_token = root.get_bool("registration_requires_token", False)
    if enabled and not (without_verification or requires_token):
        raise ConfigError(OPEN_REGISTRATION_ERROR, "enable_registration")
    return {
        "enable_registration": enabled,
        "enable_registration_without_verification": without_verification,
        "registration_requires_token": requires_token,
    }


def _shared_secret(root: Section) -> str | None:
    secret = root.get_opt_str("registration_shared_secret")
    path = root.get_opt_str("registration_shared_secret_path")
    if path:
        if secret:
            raise ConfigError(
                "set either registration_shared_secret or registration_shared_secret_path, not both",
                "registration_shared_secret_path",
            )
        secret = read_secret_file(path, "registration_shared_secret_path")
        if not secret:
            raise ConfigError(f"{path!r} is empty", "registration_shared_secret_path")
    return secret or None


def _lifetimes(root: Section) -> dict[str, int | None]:
    session = root.get_opt_duration("session_lifetime")
    refreshable: int | None = None
    if not root.is_explicit_null("refreshable_access_token_lifetime"):
        refreshable = root.get_duration("refreshable_access_token_lifetime", 5 * 60 * 1000)
    values = {
        "session_lifetime": session,
        "refreshable_access_token_lifetime": refreshable,
        "nonrefreshable_access_token_lifetime": root.get_opt_duration("nonrefreshable_access_token_lifetime"),
        "refresh_token_lifetime": root.get_opt_duration("refresh_token_lifetime"),
    }
    if session is not None:
        for key, value in values.items():
            explicit = root.has(key)
            if key != "session_lifetime" and explicit and value is not None and value > session:
                raise ConfigError(f"must not exceed session_lifetime ({session} ms), got {value} ms", key)
    return values


def _presence_enabled(root: Section) -> bool:
    sec = root.section("presence")
    value = sec.raw("enabled")
    if value is None:
        return root.get_bool("use_presence", True)
    if value == "untracked":
        return True
    return sec.get_bool("enabled", True)


def _encryption_room_type(root: Section) -> str:
    value = root.raw("encryption_enabled_by_default_for_room_type")
    if value is False:  # YAML 1.1 reads an unquoted `off` as false
        return "off"
    return root.get_choice("encryption_enabled_by_default_for_room_type", "off", ENCRYPTION_ROOM_TYPES)


def _server_notices(root: Section) -> ServerNoticesConfig | None:
    sec = root.section("server_notices")
    localpart = sec.get_opt_str("system_mxid_localpart")
    config = ServerNoticesConfig(
        system_mxid_localpart=localpart or "",
        system_mxid_display_name=sec.get_opt_str("system_mxid_display_name"),
        system_mxid_avatar_url=sec.get_opt_str("system_mxid_avatar_url"),
        room_name=sec.get_str("room_name", "Server Notices"),
        room_avatar_url=sec.get_opt_str("room_avatar_url"),
        room_topic=sec.get_opt_str("room_topic"),
        auto_join=sec.get_bool("auto_join", False),
    )
    # As Synapse: without a system user localpart, server notices are off.
    return config if localpart else None


def _user_directory(root: Section) -> UserDirectoryConfig:
    sec = root.section("user_directory")
    return UserDirectoryConfig(
        enabled=sec.get_bool("enabled", True),
        search_all_users=sec.get_bool("search_all_users", False),
        prefer_local_users=sec.get_bool("prefer_local_users", False),
        exclude_remote_users=sec.get_bool("exclude_remote_users", False),
    )


def _auto_join_rooms(root: Section) -> tuple[str, ...]:
    rooms = root.get_str_list("auto_join_rooms")
    for index, room in enumerate(rooms):
        if not (is_valid_room_alias(room) or is_valid_room_id(room)):
            raise ConfigError(
                f"expected a room alias such as #welcome:example.com, got {room!r}",
                join_path("auto_join_rooms", index),
            )
    return rooms


def _turn(root: Section) -> TurnConfig:
    return TurnConfig(
        uris=root.get_str_list("turn_uris"),
        shared_secret=root.get_opt_str("turn_shared_secret"),
        username=root.get_opt_str("turn_username"),
        password=root.get_opt_str("turn_password"),
        user_lifetime=root.get_duration("turn_user_lifetime", 3600 * 1000),
    )
