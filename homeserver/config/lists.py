"""Readers for list-valued keys: directory rules, trusted key servers, thumbnail sizes, IP ranges."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section, join_path
from homeserver.config.sections import RoomDirectoryRule, ThumbnailSize, TrustedKeyServer
from homeserver.core.ids import is_valid_server_name


def read_rules(
    root: Section, key: str, default: tuple[RoomDirectoryRule, ...]
) -> tuple[RoomDirectoryRule, ...]:
    """`alias_creation_rules` / `room_list_publication_rules`: absent -> default; [] denies all."""
    if not root.has(key):
        return default
    rules: list[RoomDirectoryRule] = []
    for sec in root.sections(key):
        if not sec.has("action"):
            raise ConfigError("missing: expected 'allow' or 'deny'", sec.key_path("action"))
        rules.append(
            RoomDirectoryRule(
                action=sec.get_choice("action", "deny", ("allow", "deny")),
                user_id=sec.get_str("user_id", "*"),
                alias=sec.get_str("alias", "*"),
                room_id=sec.get_str("room_id", "*"),
            )
        )
    return tuple(rules)


def read_trusted_key_servers(root: Section) -> tuple[TrustedKeyServer, ...]:
    servers: list[TrustedKeyServer] = []
    for sec in root.sections("trusted_key_servers"):
        name = sec.get_opt_str("server_name")
        if not name or not is_valid_server_name(name):
            raise sec.error("server_name", "a server name", name)
        sec.get_bool("accept_keys_insecurely", False)
        keys_sec = sec.section("verify_keys")
        verify_keys: dict[str, str] | None = None
        if sec.has("verify_keys"):
            verify_keys = {key_id: keys_sec.get_str(key_id, "") for key_id in keys_sec.keys()}
        servers.append(
            TrustedKeyServer(name, MappingProxyType(verify_keys) if verify_keys is not None else None)
        )
    return tuple(servers)


def read_thumbnail_sizes(root: Section, default: tuple[ThumbnailSize, ...]) -> tuple[ThumbnailSize, ...]:
    if not root.has("thumbnail_sizes"):
        return default
    sizes: list[ThumbnailSize] = []
    for sec in root.sections("thumbnail_sizes"):
        for dim in ("width", "height"):
            if not sec.has(dim):
                raise ConfigError("missing: expected an integer >= 1", sec.key_path(dim))
        sizes.append(
            ThumbnailSize(
                width=sec.get_int("width", 0, minimum=1),
                height=sec.get_int("height", 0, minimum=1),
                method=sec.get_choice("method", "scale", ("crop", "scale")),
            )
        )
    return tuple(sizes)


def read_ip_ranges(
    root: Section, key: str, default: tuple[str, ...], always: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """CIDR ranges (a bare address means /32 or /128), normalised; `always` is appended if absent."""
    entries = root.get_str_list(key, default)
    out: list[str] = []
    for index, entry in enumerate(entries):
        try:
            network = str(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as e:
            raise ConfigError(
                f"expected an IP range such as 10.0.0.0/8, got {entry!r}", join_path(key, index)
            ) from e
        if network not in out:
            out.append(network)
    for network in always:
        if network not in out:
            out.append(network)
    return tuple(out)
