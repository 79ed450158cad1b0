"""Media repository keys beyond the flat ones: legacy access, upload quotas, clamd, URL previews."""

from __future__ import annotations

from types import MappingProxyType

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section
from homeserver.config.ratelimits import read_rate_limit
from homeserver.config.sections import ClamdConfig, MediaOptions, MediaUploadLimit, RateLimit

DEFAULT_MAX_SPIDER_SIZE = 10 * 1024 * 1024
RC_URL_PREVIEW = RateLimit(1, 10)
CLAMD_PORT = 3310
# The URL components Synapse's `url_preview_url_blacklist` entries may match on.
URL_BLACKLIST_COMPONENTS = frozenset(
    {"scheme", "netloc", "username", "password", "hostname", "port", "path", "params", "query", "fragment"}
)


def read_media_options(root: Section) -> MediaOptions:
    return MediaOptions(
        allow_legacy_unauthenticated_media=root.get_bool("allow_legacy_unauthenticated_media", True),
        media_upload_limits=_upload_limits(root),
        max_pending_media_uploads=root.get_int("max_pending_media_uploads", 5, minimum=1),
        unused_expiration_time=root.get_duration("unused_expiration_time", 24 * 3600 * 1000),
        max_spider_size=root.get_size("max_spider_size", DEFAULT_MAX_SPIDER_SIZE),
        url_preview_accept_language=root.get_str_list("url_preview_accept_language", ("en",)),
        url_preview_url_blacklist=_url_blacklist(root),
        rc_url_preview=read_rate_limit(root, "rc_url_preview", RC_URL_PREVIEW),
        clamd=_clamd(root),
    )


def _upload_limits(root: Section) -> tuple[MediaUploadLimit, ...]:
    limits: list[MediaUploadLimit] = []
    for sec in root.sections("media_upload_limits"):
        for key in ("time_period", "max_size"):
            if not sec.has(key):
                raise ConfigError(
                    "missing: expected a duration" if key == "time_period" else "missing: expected a size",
                    sec.key_path(key),
                )
        period = sec.get_duration("time_period", 0)
        if period <= 0:
            raise sec.error("time_period", "a duration greater than zero", sec.raw("time_period"))
        limits.append(MediaUploadLimit(period, sec.get_size("max_size", 0)))
    return tuple(limits)


def _url_blacklist(root: Section) -> tuple[MappingProxyType[str, str], ...]:
    entries: list[MappingProxyType[str, str]] = []
    for sec in root.sections("url_preview_url_blacklist"):
        entry: dict[str, str] = {}
        for key in sec.keys():
            if key not in URL_BLACKLIST_COMPONENTS:
                raise ConfigError(
                    "expected one of " + ", ".join(sorted(URL_BLACKLIST_COMPONENTS)), sec.key_path(key)
                )
            entry[key] = sec.get_str(key, "")
        entries.append(MappingProxyType(entry))
    return tuple(entries)


def _clamd(root: Section) -> ClamdConfig:
    sec = root.section("clamd")
    socket = sec.get_opt_str("socket")
    host = sec.get_opt_str("host")
    if socket and host:
        raise ConfigError("set either `socket` or `host`, not both", sec.key_path("host"))
    return ClamdConfig(
        socket=socket,
        host=host,
        port=sec.get_int("port", CLAMD_PORT, minimum=1, maximum=65535),
        timeout=sec.get_duration("timeout", 60 * 1000),
        fail_closed=sec.get_bool("fail_closed", True),
    )
