"""Frozen dataclasses, one per configuration section, and the root `HomeserverConfig`.

These hold parsed, validated values only; defaults and parsing live in `defaults.py` and
`build.py`. Secrets are excluded from `repr` so a logged config never leaks them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from homeserver.config.auth_modules import LdapConfig
from homeserver.config.oidc import LoginViaExistingSession, OidcProviderConfig, SsoConfig
from homeserver.config.push import EmailConfig, PushConfig, PushGatewayConfig
from homeserver.config.workers import WorkerConfig


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One socket to listen on (Synapse's `listeners` entries, TCP only)."""

    port: int
    bind_addresses: tuple[str, ...]
    type: str  # "http" or "metrics"
    tls: bool  # serve HTTPS with tls_certificate_path / tls_private_key_path (Synapse's `tls: true`)
    x_forwarded: bool  # trust X-Forwarded-For / X-Forwarded-Proto from the proxy
    # Flattened resource names: client, federation, media, metrics, keys, health, openid, replication
    resources: tuple[str, ...]
    # With x_forwarded: further proxies (CIDRs) between the client and the one that connects to
    # us; their X-Forwarded-For hops are skipped when looking for the client (our extension).
    trusted_proxies: tuple[str, ...] = ()

    def has(self, resource: str) -> bool:
        return resource in self.resources


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """TURN servers handed to VoIP clients (Synapse's `turn_*` keys)."""

    uris: tuple[str, ...]
    shared_secret: str | None = field(repr=False)  # time-limited credentials (coturn use-auth-secret)
    username: str | None
    password: str | None = field(repr=False)
    user_lifetime: int  # ms


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    engine: str  # "sqlite" or "postgres"
    sqlite_path: str
    pg_user: str | None
    pg_password: str | None = field(repr=False)
    pg_database: str | None
    pg_host: str
    pg_port: int
    pg_sslmode: str | None
    cp_min: int
    cp_max: int

    @property
    def is_sqlite(self) -> bool:
        return self.engine == "sqlite"

    @property
    def postgres_dsn(self) -> str:
        """A libpq/asyncpg connection URL for the postgres settings (contains the password)."""
        auth = ""
        if self.pg_user:
            auth = quote(self.pg_user, safe="")
            if self.pg_password:
                auth += ":" + quote(self.pg_password, safe="")
            auth += "@"
        host = f"[{self.pg_host}]" if ":" in self.pg_host else self.pg_host
        dsn = f"postgresql://{auth}{host}:{self.pg_port}/{quote(self.pg_database or '', safe='')}"
        if self.pg_sslmode:
            dsn += f"?sslmode={quote(self.pg_sslmode, safe='')}"
        return dsn


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `burst_count` actions at once, refilled at `per_second` actions per second."""

    per_second: float
    burst_count: float

    @property
    def disabled(self) -> bool:
        """A rate of zero (or below) turns the limit off."""
        return self.per_second <= 0


@dataclass(frozen=True, slots=True)
class LoginRateLimits:
    address: RateLimit  # logins per client IP
    account: RateLimit  # logins per account
    failed_attempts: RateLimit  # failed logins per account


@dataclass(frozen=True, slots=True)
class JoinRateLimits:
    local: RateLimit  # joins to rooms this server is already in
    remote: RateLimit  # joins over federation


@dataclass(frozen=True, slots=True)
class InviteRateLimits:
    per_room: RateLimit
    per_user: RateLimit  # invites received by one user
    per_issuer: RateLimit  # invites sent by one user


@dataclass(frozen=True, slots=True)
class PresenceRateLimits:
    per_user: RateLimit


@dataclass(frozen=True, slots=True)
class FederationRateLimits:
    """Synapse's `rc_federation`: inbound federation requests per origin server."""

    window_size: int  # ms
    sleep_limit: int  # requests per window before they are delayed
    sleep_delay: int  # ms of delay per request over sleep_limit
    reject_limit: int  # concurrent delayed requests before 429
    concurrent: int  # requests processed at once per origin


@dataclass(frozen=True, slots=True)
class RedisConfig:
    enabled: bool
    host: str
    port: int
    password: str | None = field(repr=False)
    dbid: int | None
    use_tls: bool


@dataclass(frozen=True, slots=True)
class ServerNoticesConfig:
    """Synapse's `server_notices` section: who sends notices and how their room looks."""

    system_mxid_localpart: str
    system_mxid_display_name: str | None
    system_mxid_avatar_url: str | None
    room_name: str
    room_avatar_url: str | None
    room_topic: str | None
    auto_join: bool


@dataclass(frozen=True, slots=True)
class UserDirectoryConfig:
    enabled: bool
    search_all_users: bool  # False: only users sharing a room with the searcher or in public rooms
    prefer_local_users: bool
    exclude_remote_users: bool


@dataclass(frozen=True, slots=True)
class ThumbnailSize:
    width: int
    height: int
    method: str  # "crop" or "scale"


@dataclass(frozen=True, slots=True)
class MediaUploadLimit:
    """One `media_upload_limits` entry: at most `max_size` bytes per user in any `time_period`."""

    time_period: int  # ms
    max_size: int  # bytes


@dataclass(frozen=True, slots=True)
class ClamdConfig:
    """The `clamd` section: virus-scan every upload through clamd's INSTREAM command."""

    socket: str | None  # unix socket path (set this or host)
    host: str | None
    port: int
    timeout: int  # ms for one scan
    fail_closed: bool  # scanner unreachable or erroring -> refuse the upload

    @property
    def enabled(self) -> bool:
        return bool(self.socket or self.host)


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """Media repository settings beyond the flat keys of `HomeserverConfig` (see config/media.py)."""

    allow_legacy_unauthenticated_media: bool
    media_upload_limits: tuple[MediaUploadLimit, ...]
    max_pending_media_uploads: int
    unused_expiration_time: int  # ms
    max_spider_size: int  # bytes
    url_preview_accept_language: tuple[str, ...]
    url_preview_url_blacklist: tuple[Mapping[str, str], ...]
    rc_url_preview: RateLimit
    clamd: ClamdConfig


@dataclass(frozen=True, slots=True)
class TrustedKeyServer:
    server_name: str
    # key id -> unpadded base64 ed25519 public key; None trusts the keys fetched over TLS
    verify_keys: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class OldSigningKey:
    """One `old_signing_keys` entry: a key this server used to sign with, published as expired."""

    key_id: str
    key: str  # unpadded base64 verify key
    expired_ts: int  # ms


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """Federation transport settings, with Synapse's key names (mostly top-level keys; the retry
    intervals come from Synapse's `federation:` section)."""

    tls_certificate_path: str | None  # PEM, leaf first then the chain
    tls_private_key_path: str | None
    verify_certificates: bool  # federation_verify_certificates
    custom_ca_list: tuple[str, ...]  # federation_custom_ca_list: PEM files trusted instead of the system CAs
    old_signing_keys: tuple[OldSigningKey, ...]
    destination_min_retry_interval: int  # ms
    destination_retry_multiplier: float
    destination_max_retry_interval: int  # ms
    client_timeout: int  # ms for one outbound request (federation.client_timeout)
    allow_profile_lookup_over_federation: bool
    # Synapse's `send_federation`: this process sends outbound transactions (main process only).
    send_federation: bool = True
    # federation.max_queued_pdus: PDUs queued per destination before catch-up mode takes over.
    max_queued_pdus: int = 1000


@dataclass(frozen=True, slots=True)
class RoomDirectoryRule:
    """One rule of `alias_creation_rules` / `room_list_publication_rules` (globs with * and ?)."""

    action: str  # "allow" or "deny"
    user_id: str = "*"
    alias: str = "*"
    room_id: str = "*"

    def matches(self, user_id: str, room_id: str, aliases: Collection[str]) -> bool:
        """Synapse's semantics: every glob must match; with aliases, any one of them may match."""
        if not _glob(self.user_id).match(user_id) or not _glob(self.room_id).match(room_id):
            return False
        if self.alias == "*":
            return True
        pattern = _glob(self.alias)
        return any(pattern.match(alias) for alias in aliases)


def first_matching_action(
    rules: tuple[RoomDirectoryRule, ...], user_id: str, room_id: str, aliases: Collection[str]
) -> bool:
    """True when the first matching rule allows; no matching rule denies."""
    for rule in rules:
        if rule.matches(user_id, room_id, aliases):
            return rule.action == "allow"
    return False


_GLOB_CACHE: dict[str, re.Pattern[str]] = {}


def _glob(pattern: str) -> re.Pattern[str]:
    compiled = _GLOB_CACHE.get(pattern)
    if compiled is None:
        body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        compiled = re.compile(rf"\A{body}\Z", re.IGNORECASE | re.DOTALL)
        _GLOB_CACHE[pattern] = compiled
    return compiled


@dataclass(frozen=True, slots=True)
class WordFilterConfig:
    """The `word_filter` section: messages, room names and topics containing listed words (see
    services/content_policy.py for the matching rules)."""

    enabled: bool
    words: tuple[str, ...]  # `words` plus the lines of `words_file`
    action: str  # "reject" (403 M_FORBIDDEN) or "redact" (accept, then redact at once)
    exempt_admins: bool


@dataclass(frozen=True, slots=True)
class RoomCreationConfig:
    """The `room_creation` section: who may create rooms."""

    allow: str  # "everyone" or "admins"
    allow_direct_messages: bool  # with allow: admins, everyone may still start a direct chat


@dataclass(frozen=True, slots=True)
class RetentionPurgeJob:
    """One entry of `retention.purge_jobs`: rooms whose max_lifetime lies in the (inclusive) range
    are purged every `interval` ms. None bounds are open."""

    shortest_max_lifetime: int | None
    longest_max_lifetime: int | None
    interval: int


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """Synapse's `retention` section (MSC1763), plus `export_dir` (ours): where expired events are
    written as JSON lines, one file per room, before they are purged."""

    enabled: bool = False
    default_min_lifetime: int | None = None
    default_max_lifetime: int | None = None
    allowed_lifetime_min: int | None = None
    allowed_lifetime_max: int | None = None
    purge_jobs: tuple[RetentionPurgeJob, ...] = ()
    export_dir: str | None = None


@dataclass(frozen=True, slots=True)
class ComplianceConfig:
    retention: RetentionConfig = RetentionConfig()
    # Regexes whose matches are masked in search results (highlights and result bodies).
    search_mask_patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HomeserverConfig:
    """The whole, validated configuration. Build it with `load_config()`."""

    # -- server
    server_name: str
    public_baseurl: str  # always ends with "/"
    serve_client_wellknown: bool  # True when public_baseurl was set explicitly (as Synapse)
    serve_server_wellknown: bool
    data_dir: str
    pid_file: str | None
    soft_file_limit: int  # RLIMIT_NOFILE soft limit to set at start; 0 = raise to the hard limit
    instance_name: str
    signing_key_path: str
    key_refresh_interval: int  # ms
    trusted_key_servers: tuple[TrustedKeyServer, ...]
    admin_contact: str | None
    default_room_version: str
    log_level: str
    log_config: str | None
    listeners: tuple[ListenerConfig, ...]
    enable_metrics: bool
    max_request_body_size: int
    ip_range_blacklist: tuple[str, ...]
    ip_range_whitelist: tuple[str, ...]
    federation_domain_whitelist: tuple[str, ...] | None
    federation: FederationConfig
    # -- storage and scale-out
    database: DatabaseConfig
    redis: RedisConfig
    # -- registration and sessions
    enable_registration: bool
    enable_registration_without_verification: bool
    registration_requires_token: bool
    registration_shared_secret: str | None = field(repr=False)
    registration_shared_secret_path: str | None
    allow_guest_access: bool
    bcrypt_rounds: int
    auto_join_rooms: tuple[str, ...]
    enable_set_displayname: bool
    enable_set_avatar_url: bool
    session_lifetime: int | None  # ms
    refreshable_access_token_lifetime: int | None  # ms
    nonrefreshable_access_token_lifetime: int | None  # ms
    refresh_token_lifetime: int | None  # ms
    # -- rate limits
    rc_message: RateLimit
    rc_registration: RateLimit
    rc_registration_token_validity: RateLimit
    rc_login: LoginRateLimits
    rc_joins: JoinRateLimits
    rc_joins_per_room: RateLimit
    rc_invites: InviteRateLimits
    rc_room_creation: RateLimit
    rc_media_create: RateLimit
    rc_key_requests: RateLimit
    rc_presence: PresenceRateLimits
    rc_reports: RateLimit
    rc_user_directory: RateLimit
    rc_delayed_event_mgmt: RateLimit
    rc_admin_redaction: RateLimit | None
    rc_federation: FederationRateLimits
    # -- media
    enable_media_repo: bool
    enable_authenticated_media: bool
    media_store_path: str
    max_upload_size: int
    max_image_pixels: int
    dynamic_thumbnails: bool
    thumbnail_sizes: tuple[ThumbnailSize, ...]
    url_preview_enabled: bool
    url_preview_ip_range_blacklist: tuple[str, ...]
    url_preview_ip_range_whitelist: tuple[str, ...]
    media: MediaOptions  # legacy access, quotas, clamd, more URL-preview settings
    # -- rooms, directory, profiles, presence
    encryption_enabled_by_default_for_room_type: str  # "all", "invite" or "off"
    room_list_publication_rules: tuple[RoomDirectoryRule, ...]
    alias_creation_rules: tuple[RoomDirectoryRule, ...]
    enable_room_list_search: bool
    allow_public_rooms_without_auth: bool
    allow_public_rooms_over_federation: bool
    block_non_admin_invites: bool
    enable_search: bool
    filter_timeline_limit: int
    forget_rooms_on_leave: bool
    redaction_retention_period: int | None  # ms
    user_ips_max_age: int | None  # ms
    audit_log_retention_period: int | None  # ms; None keeps audit records forever
    audit_log_admin_room_reads: bool  # also record admins reading rooms through the admin API
    user_directory: UserDirectoryConfig
    presence_enabled: bool
    require_auth_for_profile_requests: bool
    limit_profile_requests_to_users_who_share_rooms: bool
    # -- moderation
    word_filter: WordFilterConfig
    room_creation: RoomCreationConfig
    require_membership_for_aliases: bool
    # -- integrations
    app_service_config_files: tuple[str, ...]
    turn: TurnConfig
    # -- bookkeeping
    config_files: tuple[str, ...]  # files read, in order (empty with embedded defaults)
    unknown_keys: tuple[str, ...]  # keys present but not implemented (logged once at startup)
    extras: Mapping[str, Any] = field(repr=False)  # the raw merged mapping, for later sections
    # -- admin
    server_notices: ServerNoticesConfig | None = None  # None: server notices are not configured
    compliance: ComplianceConfig = ComplianceConfig()  # retention, search masking
    ldap: LdapConfig | None = None  # the LDAP password provider (`modules:`), if enabled
    oidc_providers: tuple[OidcProviderConfig, ...] = ()  # single sign-on
    sso: SsoConfig = field(default_factory=SsoConfig)
    login_via_existing_session: LoginViaExistingSession = field(default_factory=LoginViaExistingSession)
    push: PushConfig = field(default_factory=PushConfig)  # push delivery (docs/push.md)
    email: EmailConfig = field(default_factory=EmailConfig)  # email notifications (docs/push.md)
    push_gateway: PushGatewayConfig = field(default_factory=PushGatewayConfig)  # embedded gateway
    workers: WorkerConfig = field(default_factory=WorkerConfig)  # role and replication (scale-out)

    def serves_metrics(self, listener: ListenerConfig) -> bool:
        """Whether /metrics is served on this listener (needs `enable_metrics`, as in Synapse)."""
        return self.enable_metrics and listener.has("metrics")

    def may_publish_room(self, user_id: str, room_id: str, aliases: Collection[str]) -> bool:
        """`room_list_publication_rules` verdict for a client publishing a room (not the admin API)."""
        return first_matching_action(self.room_list_publication_rules, user_id, room_id, aliases)

    def may_create_alias(self, user_id: str, room_id: str, alias: str) -> bool:
        return first_matching_action(self.alias_creation_rules, user_id, room_id, [alias])
