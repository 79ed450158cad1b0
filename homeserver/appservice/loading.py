"""Reading appservice registration files (`app_service_config_files`), Synapse's YAML format.

Checked at start: a bad file is a one-line `ConfigError` naming the file, the key and the problem
(the CLI turns it into exit code 2), and two registrations sharing an `id` or a token refuse to
start, since the server could not tell which appservice a request comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from homeserver.appservice.registry import ApplicationService, Namespace
from homeserver.config.errors import ConfigError

NAMESPACE_KINDS = ("users", "aliases", "rooms")
# Unstable keys bridges still send (MSC2409 ephemeral events, MSC3202 device lists / OTKs).
_BOOL_KEYS = (
    "rate_limited",
    "receive_ephemeral",
    "de.sorunome.msc2409.push_ephemeral",
    "org.matrix.msc3202",
    "push_to_device",
    "org.matrix.msc2409.push_to_device",
    "io.element.msc4190",
)


def _fail(path: str, key: str, problem: str) -> ConfigError:
    return ConfigError(f"appservice registration {path}: {key}: {problem}", path="app_service_config_files")


def _namespaces(path: str, raw: Any, kind: str) -> tuple[Namespace, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(path, f"namespaces.{kind}", "must be a list")
    out = []
    for i, entry in enumerate(raw):
        key = f"namespaces.{kind}[{i}]"
        if not isinstance(entry, dict):
            raise _fail(path, key, "must be a mapping with 'regex' and 'exclusive'")
        regex, exclusive = entry.get("regex"), entry.get("exclusive")
        if not isinstance(regex, str):
            raise _fail(path, f"{key}.regex", "missing or not a string")
        if not isinstance(exclusive, bool):
            raise _fail(path, f"{key}.exclusive", "missing or not a boolean")
        try:
            re.compile(regex)
        except re.error as exc:
            raise _fail(path, f"{key}.regex", f"invalid regular expression ({exc})") from exc
        out.append(Namespace(regex, exclusive))
    return tuple(out)


def parse_registration(path: str, info: Any, server_name: str) -> ApplicationService:
    """One registration (the parsed YAML of file `path`) into an `ApplicationService`."""
    if not isinstance(info, dict):
        raise _fail(path, "(top level)", "must be a mapping")
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        value = info.get(key)
        if not isinstance(value, str) or not value:
            raise _fail(path, key, "missing or not a non-empty string")
    if "url" not in info:
        raise _fail(path, "url", "missing (use null for an appservice that receives no events)")
    url = info["url"]
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise _fail(path, "url", "must be null or an http(s) URL")
    if "@" in info["sender_localpart"] or ":" in info["sender_localpart"]:
        raise _fail(path, "sender_localpart", "must be a localpart, not a user id")
    for key in _BOOL_KEYS:
        if key in info and not isinstance(info[key], bool):
            raise _fail(path, key, "must be a boolean")
    namespaces = info.get("namespaces", {})
    if namespaces is None:
        namespaces = {}
    if not isinstance(namespaces, dict):
        raise _fail(path, "namespaces", "must be a mapping")
    protocols = info.get("protocols")
    if protocols is not None and (
        not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols)
    ):
        raise _fail(path, "protocols", "must be a list of strings")
    return ApplicationService(
        id=info["id"],
        as_token=info["as_token"],
        hs_token=info["hs_token"],
        sender=f"@{info['sender_localpart']}:{server_name}",
        url=url.rstrip("/") if url else None,
        users=_namespaces(path, namespaces.get("users"), "users"),
        aliases=_namespaces(path, namespaces.get("aliases"), "aliases"),
        rooms=_namespaces(path, namespaces.get("rooms"), "rooms"),
        rate_limited=info.get("rate_limited", True),
        receive_ephemeral=bool(info.get("receive_ephemeral", False)),
        unstable_ephemeral=bool(info.get("de.sorunome.msc2409.push_ephemeral", False)),
        protocols=tuple(protocols or ()),
        msc3202=bool(info.get("org.matrix.msc3202", False)),
        push_to_device=bool(info.get("push_to_device", info.get("org.matrix.msc2409.push_to_device", False))),
    )


def load_registrations(paths: Iterable[str], server_name: str) -> list[ApplicationService]:
    services: list[ApplicationService] = []
    seen: dict[str, str] = {}  # "id x" / "as_token" / "hs_token" -> file that used it first
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                info = yaml.safe_load(fh)
        except OSError as exc:
            raise _fail(path, "(file)", exc.strerror or str(exc)) from exc
        except yaml.YAMLError as exc:
            raise _fail(path, "(file)", f"not valid YAML ({exc})") from exc
        service = parse_registration(path, info, server_name)
        keys = (("id", service.id), ("as_token", service.as_token), ("hs_token", service.hs_token))
        for what, value in keys:
            marker = f"{what}\0{value}"
            if marker in seen:
                raise _fail(path, what, f"the same {what} is already used by {seen[marker]}")
            seen[marker] = path
        services.append(service)
    return services
