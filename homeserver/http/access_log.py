"""One access-log line per request, written after the response was sent, in Synapse's format:

    127.0.0.1 - 8008 - {@alice:example.org} Processed request: 0.012sec/0.000sec ru=(-, -)
    db=(0.001sec/0.004sec/3) 1234B 200 "GET /_matrix/client/v3/sync?since=s1&access_token=<redacted>
    HTTP/1.1" "Element/1.11" [2 dbevts]

Fields: client address, listener (port), authenticated user, seconds until the handler responded /
seconds spent sending the response, CPU (`-`: not measured per request in an event loop), database
(wait for a connection / time in transactions / transaction count), bytes sent, status, request line
with secrets in the query string redacted, user agent, events loaded from the database. The logger is
`homeserver.access.http.<port>` (Synapse: `synapse.access.http.<port>`); the request id is on the
record like on every other line of the request.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from homeserver.http.logcontext import request_id_var
from homeserver.http.metrics import RequestMetrics

REQUEST_METRICS: web.RequestKey[RequestMetrics] = web.RequestKey("request_metrics", RequestMetrics)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)

# Query parameters whose values never reach a log: tokens and secrets clients put in URLs.
SECRET_PARAMS = frozenset({"access_token", "client_secret", "token", "loginToken", "login_token"})


def redact_query(path_qs: str) -> str:
    """The path with the values of secret query parameters replaced by `<redacted>`."""
    path, sep, query = path_qs.partition("?")
    if not sep:
        return path_qs
    parts = query.split("&")
    changed = False
    for i, item in enumerate(parts):
        key, eq, _value = item.partition("=")
        # unquote only a key that has escapes: every line of the log goes through here
        if eq and (key in SECRET_PARAMS or ("%" in key and unquote(key) in SECRET_PARAMS)):
            parts[i] = f"{key}=<redacted>"
            changed = True
    return f"{path}?{'&'.join(parts)}" if changed else path_qs


class AccessLogger(AbstractAccessLogger):
    """aiohttp calls `log` once the response has been written."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        metrics = request.get(REQUEST_METRICS)
        if metrics is None:
            return  # refused before the middleware ran (malformed request line)
        processing = (metrics.processed or metrics.start) - metrics.start
        usage = metrics.usage
        port = _listener_port(request)
        request_id = request.get(REQUEST_ID, "-")
        token = request_id_var.set(request_id)
        try:
            self.logger.log(
                logging.DEBUG if request.path == "/health" else logging.INFO,
                "%s - %s - {%s} Processed request: %.3fsec/%.3fsec ru=(-, -) db=(%.3fsec/%.3fsec/%d)"
                ' %sB %s "%s %s HTTP/%d.%d" "%s" [%d dbevts]',
                metrics.remote or "-",
                port,
                metrics.user,
                processing,
                time - processing,
                usage.db_sched_duration_sec,
                usage.db_txn_duration_sec,
                usage.db_txn_count,
                response.body_length,
                response.status,
                request.method,
                redact_query(request.raw_path),
                request.version.major,
                request.version.minor,
                request.headers.get("User-Agent", "-"),
                usage.evt_db_fetch_count,
                extra={"request_id": request_id},
            )
        finally:
            request_id_var.reset(token)


def _listener_port(request: web.BaseRequest) -> Any:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return sockname[1]
    return "-"


def access_log_kwargs(port: int) -> dict[str, Any]:
    """AppRunner arguments that turn the access log on for a listener."""
    return {
        "access_log_class": AccessLogger,
        "access_log": logging.getLogger(f"homeserver.access.http.{port}"),
    }
