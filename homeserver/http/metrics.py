"""Prometheus metrics for the HTTP layer (process-wide, registered once)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "homeserver_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"]
)
REQUEST_SECONDS = Histogram(
    "homeserver_http_request_duration_seconds",
    "HTTP request duration by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
