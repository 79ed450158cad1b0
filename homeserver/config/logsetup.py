"""Logging setup from `log_level`, or from a Synapse-style `log_config` file (logging dictConfig YAML).

Synapse's generated log config names Synapse classes (``synapse.logging.context.LoggingContextFilter``,
``synapse.logging.handlers.PeriodicallyFlushingMemoryHandler``, ...). Those are mapped to
standard-library equivalents so an existing ``log.config`` works unchanged.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import yaml

from homeserver.config.errors import ConfigError
from homeserver.config.sections import HomeserverConfig

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SYNAPSE_MEMORY_HANDLER = "synapse.logging.handlers.PeriodicallyFlushingMemoryHandler"


def configure_logging(config: HomeserverConfig) -> None:
    if config.log_config:
        logging.config.dictConfig(load_log_config(config.log_config))
        return
    logging.basicConfig(level=config.log_level, format=DEFAULT_FORMAT)
    logging.getLogger().setLevel(config.log_level)


def load_log_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot load {path!r}: {e}", "log_config") from e
    if not isinstance(data, dict) or "version" not in data:
        raise ConfigError(f"{path!r} is not a logging dictConfig mapping (needs `version: 1`)", "log_config")
    return translate_synapse_log_config(data)


def translate_synapse_log_config(data: dict[str, Any]) -> dict[str, Any]:
    """Replace Synapse-only filters, handlers and formatters with standard-library ones."""
    filters = data.get("filters") or {}
    for name, spec in list(filters.items()):
        if isinstance(spec, dict) and str(spec.get("()", "")).startswith("synapse."):
            filters[name] = {}
    formatters = data.get("formatters") or {}
    for name, spec in list(formatters.items()):
        if isinstance(spec, dict) and str(spec.get("()", spec.get("class", ""))).startswith("synapse."):
            formatters[name] = {"format": DEFAULT_FORMAT}
    handlers = data.get("handlers") or {}
    dropped: set[str] = set()
    for name, spec in list(handlers.items()):
        if not isinstance(spec, dict):
            continue
        cls = str(spec.get("class", ""))
        if cls == _SYNAPSE_MEMORY_HANDLER:
            spec["class"] = "logging.handlers.MemoryHandler"
            spec.pop("period", None)
        elif cls.startswith("synapse."):
            dropped.add(name)
            del handlers[name]
    if dropped:
        for logger in [data.get("root") or {}, *(data.get("loggers") or {}).values()]:
            if isinstance(logger, dict) and isinstance(logger.get("handlers"), list):
                logger["handlers"] = [h for h in logger["handlers"] if h not in dropped]
    return data
