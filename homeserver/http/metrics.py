"""Per-request families under Synapse's `synapse_http_server_*` names.

`servlet` is the route's operationId (`sendMessage`, `sync`, ...): a bounded set, never a raw path.
`tag` is empty except where a handler sets one (`/sync` sets initial_sync, full_state_sync or
incremental_sync, as Synapse does). The per-request database figures come from the request's
`ResourceUsage`, which both database engines feed.
"""

from __future__ import annotations

import contextvars
import time

from homeserver.metrics import CallbackGauge, counter, histogram
from homeserver.metrics.usage import ResourceUsage, current_usage

_BASE = ["method", "servlet", "tag"]
_IN_FLIGHT = ["method", "servlet"]

requests_received = counter(
    "synapse_http_server_requests_received", "Requests received", ["method", "servlet"]
)
responses = counter("synapse_http_server_responses", "Responses sent, by status code", ["method", "code"])
response_count = counter("synapse_http_server_response_count", "Responses sent, by servlet", _BASE)
response_time = histogram(
    "synapse_http_server_response_time_seconds",
    "Seconds from receiving a request to its handler's response",
    ["method", "servlet", "tag", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180),
)
response_size = counter("synapse_http_server_response_size", "Response body bytes", _BASE)
response_db_txn_count = counter(
    "synapse_http_server_response_db_txn_count", "Database transactions per servlet", _BASE
)
response_db_txn_duration = counter(
    "synapse_http_server_response_db_txn_duration_seconds",
    "Seconds in database transactions, excluding the wait for a connection",
    _BASE,
)
response_db_sched_duration = counter(
    "synapse_http_server_response_db_sched_duration_seconds",
    "Seconds waiting for a database connection",
    _BASE,
)
# Updated while requests are still running (at each scrape), so long requests show up as they go.
in_flight_db_txn_count = counter(
    "synapse_http_server_in_flight_requests_db_txn_count",
    "Database transactions, counted as they happen",
    _IN_FLIGHT,
)
in_flight_db_txn_duration = counter(
    "synapse_http_server_in_flight_requests_db_txn_duration_seconds",
    "Seconds in database transactions, counted as they happen",
    _IN_FLIGHT,
)
in_flight_db_sched_duration = counter(
    "synapse_http_server_in_flight_requests_db_sched_duration_seconds",
    "Seconds waiting for a database connection, counted as they happen",
    _IN_FLIGHT,
)


class RequestMetrics:
    """One request's figures: started by the middleware, read by the access log."""

    __slots__ = (
        "_reported",
        "code",
        "method",
        "processed",
        "remote",
        "servlet",
        "start",
        "tag",
        "usage",
        "user",
    )

    def __init__(self, method: str, servlet: str) -> None:
        self.start = time.perf_counter()
        self.processed: float | None = None
        self.method = method
        self.servlet = servlet
        self.tag = ""
        self.code = 0
        self.user: str | None = None
        self.remote: str | None = None
        self.usage = ResourceUsage()
        self._reported = ResourceUsage()  # what the in-flight counters already include

    def update_in_flight(self) -> None:
        usage, done = self.usage, self._reported
        labels = (self.method, self.servlet)
        if usage.db_txn_count != done.db_txn_count:
            in_flight_db_txn_count.labels(*labels).inc(usage.db_txn_count - done.db_txn_count)
            in_flight_db_txn_duration.labels(*labels).inc(
                usage.db_txn_duration_sec - done.db_txn_duration_sec
            )
            in_flight_db_sched_duration.labels(*labels).inc(
                usage.db_sched_duration_sec - done.db_sched_duration_sec
            )
            done.db_txn_count = usage.db_txn_count
            done.db_txn_duration_sec = usage.db_txn_duration_sec
            done.db_sched_duration_sec = usage.db_sched_duration_sec


class _InFlight:
    def __init__(self) -> None:
        self.requests: set[RequestMetrics] = set()

    def read(self) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {}
        for request in list(self.requests):
            request.update_in_flight()
            key = (request.method, request.servlet)
            counts[key] = counts.get(key, 0) + 1
        return counts


_in_flight = _InFlight()
in_flight_requests = CallbackGauge(
    "synapse_http_server_in_flight_requests_count", "Requests being processed", _IN_FLIGHT
)
in_flight_requests.bind(_in_flight, _InFlight.read)

current_request: contextvars.ContextVar[RequestMetrics | None] = contextvars.ContextVar(
    "current_request", default=None
)


_Tokens = tuple[contextvars.Token[RequestMetrics | None], contextvars.Token[ResourceUsage | None]]


def start_request(method: str, servlet: str) -> tuple[RequestMetrics, _Tokens]:
    metrics = RequestMetrics(method, servlet)
    requests_received.labels(method, servlet).inc()
    _in_flight.requests.add(metrics)
    return metrics, (current_request.set(metrics), current_usage.set(metrics.usage))


class _ResponseChildren:
    """The labelled children one kind of response (method, servlet, tag, code) updates, looked up
    once: seven `labels()` calls per request added up on woken /sync requests."""

    __slots__ = ("count", "db_sched", "db_txn", "db_txn_duration", "responses", "size", "time")

    def __init__(self, method: str, servlet: str, tag: str, code: str) -> None:
        self.responses = responses.labels(method, code)
        self.count = response_count.labels(method, servlet, tag)
        self.time = response_time.labels(method, servlet, tag, code)
        self.size = response_size.labels(method, servlet, tag)
        self.db_txn = response_db_txn_count.labels(method, servlet, tag)
        self.db_txn_duration = response_db_txn_duration.labels(method, servlet, tag)
        self.db_sched = response_db_sched_duration.labels(method, servlet, tag)


_response_children: dict[tuple[str, str, str, int], _ResponseChildren] = {}


def finish_request(metrics: RequestMetrics, code: int, body_bytes: int | None, tokens: _Tokens) -> None:
    """The handler has produced its response (it may still be streaming, e.g. a media download)."""
    current_request.reset(tokens[0])
    current_usage.reset(tokens[1])
    _in_flight.requests.discard(metrics)
    metrics.processed = time.perf_counter()
    metrics.code = code
    key = (metrics.method, metrics.servlet, metrics.tag, code)
    children = _response_children.get(key)
    if children is None:  # bounded like the label sets themselves
        children = _response_children[key] = _ResponseChildren(
            metrics.method, metrics.servlet, metrics.tag, str(code)
        )
    children.responses.inc()
    children.count.inc()
    children.time.observe(metrics.processed - metrics.start)
    if body_bytes:
        children.size.inc(body_bytes)
    usage = metrics.usage
    if usage.db_txn_count:
        children.db_txn.inc(usage.db_txn_count)
        children.db_txn_duration.inc(usage.db_txn_duration_sec)
        children.db_sched.inc(usage.db_sched_duration_sec)
        metrics.update_in_flight()


def note_client(remote: str | None, user_id: str | None) -> None:
    """The client address as the route handler sees it (after any proxy header handling) and the
    authenticated user, for the access log."""
    metrics = current_request.get()
    if metrics is not None:
        metrics.remote = remote
        metrics.user = user_id


def set_request_tag(tag: str) -> None:
    """Label this request's response families with `tag` (Synapse's logcontext tag)."""
    metrics = current_request.get()
    if metrics is not None:
        metrics.tag = tag
