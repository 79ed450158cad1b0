"""Environment variable overrides, applied to the raw mapping before it is parsed.

* ``HOMESERVER__<KEY>__<SUBKEY>...=<value>``: sets a key by path. Segments are lower-cased,
  ``__`` separates them, a numeric segment indexes a list (``HOMESERVER__LISTENERS__0__PORT``),
  and the value is parsed as YAML (``true``, ``8448``, ``[a, b]``, ``{per_second: 1}``).
* Conveniences: ``HOMESERVER_SERVER_NAME``, ``HOMESERVER_DATA_DIR`` and
  ``HOMESERVER_DATABASE_URL`` (``postgresql://user:pass@host:port/db`` or ``sqlite:///path``).

Conveniences apply first, then the path variables in sorted order, so a path variable can
refine what a convenience set (``HOMESERVER__DATABASE__ARGS__CP_MAX=20``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import yaml

from homeserver.config.database import database_url_to_raw
from homeserver.config.errors import ConfigError

PREFIX = "HOMESERVER"
PATH_PREFIX = PREFIX + "__"
SERVER_NAME_VAR = PREFIX + "_SERVER_NAME"
DATA_DIR_VAR = PREFIX + "_DATA_DIR"
DATABASE_URL_VAR = PREFIX + "_DATABASE_URL"


def apply_env_overrides(
    raw: MutableMapping[str, Any],
    env: Mapping[str, str],
    seeds: Mapping[str, Callable[[], Any]] | None = None,
) -> list[str]:
    """Apply the overrides in `env` to `raw` in place; returns the variable names used.

    `seeds` gives, for top-level keys absent from `raw`, the default value to start from
    when a path variable reaches into them (so ``HOMESERVER__LISTENERS__0__PORT`` edits the
    embedded default listener rather than creating a listener with only a port).
    """
    used: list[str] = []
    if env.get(SERVER_NAME_VAR):
        raw["server_name"] = env[SERVER_NAME_VAR]
        used.append(SERVER_NAME_VAR)
    if env.get(DATA_DIR_VAR):
        raw["data_dir"] = env[DATA_DIR_VAR]
        used.append(DATA_DIR_VAR)
    if env.get(DATABASE_URL_VAR):
        raw["database"] = database_url_to_raw(env[DATABASE_URL_VAR], DATABASE_URL_VAR)
        used.append(DATABASE_URL_VAR)
    for name in sorted(env):
        if not name.startswith(PATH_PREFIX):
            continue
        segments = [s.lower() for s in name[len(PATH_PREFIX) :].split("__")]
        if not segments or any(not s for s in segments):
            raise ConfigError("empty path segment (use `__` between keys)", name)
        top = segments[0]
        if top not in raw and seeds and top in seeds and len(segments) > 1:
            raw[top] = copy.deepcopy(seeds[top]())
        _set_path(raw, segments, parse_env_value(env[name]), name)
        used.append(name)
    return used


def parse_env_value(text: str) -> Any:
    """YAML scalar/flow parsing, with two guards for values meant as strings.

    An empty string stays empty, and a number is kept only if it reads back the same, so
    secrets or names such as ``0x1F``, ``0123`` or ``1_000`` are not turned into integers.
    """
    if text.strip() == "":
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, int | float) and not isinstance(value, bool) and str(value) != text.strip():
        return text
    return value


def _set_path(raw: MutableMapping[str, Any], segments: list[str], value: Any, var: str) -> None:
    node: Any = raw
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        if isinstance(node, list):
            if not segment.isdigit():
                raise ConfigError(
                    f"{'.'.join(segments[:depth])} is a list; expected an index, got {segment!r}", var
                )
            index = int(segment)
            if index > len(node):
                raise ConfigError(f"index {index} is past the end of a list of {len(node)}", var)
            if index == len(node):
                node.append({})
            if last:
                node[index] = value
            else:
                if not isinstance(node[index], dict | list):
                    node[index] = {}
                node = node[index]
        elif isinstance(node, MutableMapping):
            if last:
                node[segment] = value
            else:
                child = node.get(segment)
                if not isinstance(child, dict | list):
                    child = [] if segments[depth + 1].isdigit() else {}
                    node[segment] = child
                node = child
        else:  # pragma: no cover - _set_path only descends into dicts and lists
            raise ConfigError("cannot descend into a scalar", var)
