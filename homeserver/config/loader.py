"""`load_config`: read YAML file(s), merge overrides and environment variables, validate."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from homeserver.config.build import build_config
from homeserver.config.env import apply_env_overrides
from homeserver.config.errors import ConfigError
from homeserver.config.listeners import default_listener_raw
from homeserver.config.sections import HomeserverConfig

PathArg = str | os.PathLike[str]
_SEEDS = {"listeners": lambda: [default_listener_raw()]}


def load_config(
    path: PathArg | Sequence[PathArg] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> HomeserverConfig:
    """Load a Synapse-style homeserver.yaml (or none: embedded defaults) into a `HomeserverConfig`.

    `path` may be one file, a directory (its ``*.yaml`` files in name order, like Synapse's
    ``-c conf.d/``) or a list of those; later files replace earlier top-level keys. Then
    `overrides` (top-level keys, handy in tests) and the ``HOMESERVER_*`` variables of `env`
    (default: ``os.environ``; pass ``{}`` to ignore the environment) are applied.
    Raises ConfigError.
    """
    raw: dict[str, Any] = {}
    files: list[str] = []
    for file in _config_files(path):
        raw.update(read_yaml_file(file))
        files.append(file)
    if overrides:
        raw.update(copy.deepcopy(dict(overrides)))
    apply_env_overrides(raw, os.environ if env is None else env, _SEEDS)
    return build_config(raw, tuple(files))


def read_yaml_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path!r}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys to values, got {type(data).__name__}"
        )
    return {str(k): v for k, v in data.items()}


def _config_files(path: PathArg | Sequence[PathArg] | None) -> list[str]:
    if path is None:
        return []
    paths: list[PathArg] = [path] if isinstance(path, str | os.PathLike) else list(path)
    files: list[str] = []
    for entry in paths:
        entry_path = Path(entry)
        if entry_path.is_dir():
            files.extend(
                str(child)
                for child in sorted(entry_path.iterdir())
                if child.suffix in (".yaml", ".yml") and child.is_file()
            )
        elif entry_path.exists():
            files.append(str(entry_path))
        else:
            raise ConfigError(f"config file not found: {str(entry)!r}")
    return files
