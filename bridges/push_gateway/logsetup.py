"""Logging like the homeserver's: one line per record with a request id; or the config's dictConfig."""

from __future__ import annotations

import logging
import logging.config
from typing import Any


def setup_logging(setup: dict[str, Any] | None, level: str = "INFO") -> None:
    if setup is not None:
        # Sygnal's `log.setup` is a logging dictConfig; apply it as is.
        logging.config.dictConfig(setup)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
