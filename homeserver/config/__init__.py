"""Configuration: Synapse-compatible homeserver.yaml -> frozen, validated dataclasses.

``load_config(path, env)`` is the entry point; ``generate_config_yaml()`` writes a commented
file with every supported key. See docs/configuration.md.
"""

from homeserver.config.build import build_config, supported_keys
from homeserver.config.errors import ConfigError
from homeserver.config.generate import generate_config_yaml
from homeserver.config.loader import load_config
from homeserver.config.logsetup import configure_logging
from homeserver.config.parsing import parse_duration, parse_size
from homeserver.config.sections import (
    DatabaseConfig,
    FederationRateLimits,
    HomeserverConfig,
    InviteRateLimits,
    JoinRateLimits,
    ListenerConfig,
    LoginRateLimits,
    PresenceRateLimits,
    RateLimit,
    RedisConfig,
    RoomDirectoryRule,
    ThumbnailSize,
    TrustedKeyServer,
    UserDirectoryConfig,
)

__all__ = [
    "ConfigError",
    "DatabaseConfig",
    "FederationRateLimits",
    "HomeserverConfig",
    "InviteRateLimits",
    "JoinRateLimits",
    "ListenerConfig",
    "LoginRateLimits",
    "PresenceRateLimits",
    "RateLimit",
    "RedisConfig",
    "RoomDirectoryRule",
    "ThumbnailSize",
    "TrustedKeyServer",
    "UserDirectoryConfig",
    "build_config",
    "configure_logging",
    "generate_config_yaml",
    "load_config",
    "parse_duration",
    "parse_size",
    "supported_keys",
]
