"""Default values that are more than a literal: Synapse's lists and rate limits."""

from __future__ import annotations

from homeserver.config.sections import RateLimit, ThumbnailSize

DEFAULT_SERVER_NAME = "localhost"
DEFAULT_DATA_DIR = "./data"
DEFAULT_PORT = 8008
DEFAULT_ROOM_VERSION = "11"
# Room versions a config may name as default_room_version.
KNOWN_ROOM_VERSIONS = frozenset({"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"})

# The embedded listener: loopback only, everything on one port. /metrics is listed but only
# served with `enable_metrics: true`.
DEFAULT_LISTENER_RESOURCES = ("client", "federation", "keys", "media", "openid", "health", "metrics")
DEFAULT_LISTENER_BIND = ("127.0.0.1",)
# Synapse's defaults for a listener without bind_addresses.
SYNAPSE_BIND_ADDRESSES = ("::", "0.0.0.0")
SYNAPSE_METRICS_BIND_ADDRESSES = ("0.0.0.0",)
LISTENER_TYPES = ("http", "metrics")
# Resource names we serve; Synapse's "consent" and "static" are accepted and reported as unknown.
KNOWN_RESOURCES = frozenset(
    {"client", "federation", "media", "metrics", "keys", "health", "openid", "replication"}
)
UNSUPPORTED_RESOURCES = frozenset({"consent", "static"})

# 200 PDUs of 64 KiB: what Synapse accepts for non-media requests (a federation /send fits).
DEFAULT_MAX_REQUEST_BODY_SIZE = 200 * 65536
DEFAULT_MAX_UPLOAD_SIZE = 50 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 32 * 1024 * 1024

DEFAULT_THUMBNAIL_SIZES = (
    ThumbnailSize(32, 32, "crop"),
    ThumbnailSize(96, 96, "crop"),
    ThumbnailSize(320, 240, "scale"),
    ThumbnailSize(640, 480, "scale"),
    ThumbnailSize(800, 600, "scale"),
)

# Synapse's DEFAULT_IP_RANGE_BLOCKLIST: private, loopback, link-local, test and multicast ranges.
DEFAULT_IP_RANGE_BLACKLIST = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
)
# Always blocked in addition to any configured list (unroutable "any" addresses).
ALWAYS_BLOCKED = ("0.0.0.0/32", "::/128")

# Rate limits: Synapse's defaults unless said otherwise.
RC_MESSAGE = RateLimit(0.2, 10)
RC_REGISTRATION = RateLimit(0.17, 3)
RC_REGISTRATION_TOKEN_VALIDITY = RateLimit(0.1, 5)
# Logins per client address: far above Synapse's 0.003/5, because a whole school or office often
# reaches the server from one NAT address (or, without x_forwarded, every user shares the proxy's
# address). 100 at once, then one a second. The per-account limits below do the protecting.
RC_LOGIN_ADDRESS = RateLimit(1, 100)
RC_LOGIN_ACCOUNT = RateLimit(0.003, 5)
RC_LOGIN_FAILED_ATTEMPTS = RateLimit(0.17, 3)
RC_JOINS_LOCAL = RateLimit(0.1, 10)
RC_JOINS_REMOTE = RateLimit(0.01, 10)
RC_JOINS_PER_ROOM = RateLimit(1, 10)
RC_INVITES_PER_ROOM = RateLimit(0.3, 10)
RC_INVITES_PER_USER = RateLimit(0.003, 5)
RC_INVITES_PER_ISSUER = RateLimit(0.3, 10)
RC_ROOM_CREATION = RateLimit(0.016, 10)
RC_MEDIA_CREATE = RateLimit(10, 50)
RC_KEY_REQUESTS = RateLimit(20, 100)
RC_PRESENCE_PER_USER = RateLimit(0.1, 1)
RC_REPORTS = RateLimit(1, 5)
RC_USER_DIRECTORY = RateLimit(0.016, 200)
RC_DELAYED_EVENT_MGMT = RateLimit(1, 5)
RC_ADMIN_REDACTION = RateLimit(0.17, 3)  # used when the section is present but partial

# Keys Synapse's generated homeserver.yaml (or common tuning) always carries, which we accept
# without reporting them as unknown: they have no meaning here.
IGNORED_KEYS = frozenset(
    {
        "report_stats",
        "report_stats_endpoint",
        "macaroon_secret_key",
        "form_secret",
        "suppress_key_server_warning",
        "daemonize",
        "print_pidfile",
        "use_frozen_dicts",
        "gc_thresholds",
        "gc_min_interval",
        "caches",
        "event_cache_size",
    }
)
