"""Request ids on every log line, carried by a context variable."""

from __future__ import annotations

import contextvars
import logging
import logging.config
from typing import Any

from homeserver.core.errors import DatabaseUnavailableError

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        record.request_id = request_id
        record.request = request_id  # the name Synapse's log formats use
        _collapse_outage_traceback(record)
        return True


def _collapse_outage_traceback(record: logging.LogRecord) -> None:
    """A database outage is one known condition, reported on one line: a traceback per failed
    background write would bury the operator's log while PostgreSQL restarts."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, DatabaseUnavailableError):
        record.msg = f"{record.getMessage()}: {exc}"
        record.args = ()
        record.exc_info = None
        record.exc_text = None


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def apply_log_config(config: dict[str, Any]) -> None:
    """Apply a logging dictConfig (the `log_config` file) and give every handler the request id.

    The filter goes on the handlers themselves, so formats may use ``%(request_id)s`` (or
    Synapse's ``%(request)s``) whether or not the file declares a filter.
    """
    logging.config.dictConfig(config)
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in config.get("loggers") or {})]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())
