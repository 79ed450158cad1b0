"""Prometheus metrics under the names Sygnal exports, so existing dashboards keep working."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NOTIFS_RECEIVED = Counter("sygnal_notifications_received", "Number of notification pokes received")
DEVICES_RECEIVED = Counter("sygnal_notifications_devices_received", "Number of devices been asked to push")
PER_PUSHKIN = Counter(
    "sygnal_per_pushkin_type", "Number of pushes sent via each type of pushkin", labelnames=["pushkin"]
)
HTTP_RESPONSES = Counter(
    "sygnal_pushgateway_status_codes",
    "HTTP Response Codes given on the Push Gateway API",
    labelnames=["code"],
)
NOTIFY_TIME = Histogram(
    "sygnal_notify_time", "Time taken to handle /notify push gateway request", labelnames=["code"]
)
REQUESTS_IN_FLIGHT = Gauge(
    "sygnal_requests_in_flight", "Number of HTTP requests in flight", labelnames=["resource"]
)
INFLIGHT_LIMIT_DROPS = Counter(
    "sygnal_inflight_request_limit_drop",
    "Number of notifications dropped because the number of inflight requests"
    " exceeded the configured inflight_request_limit.",
    labelnames=["pushkin"],
)

# Per service: Sygnal has one family per pushkin type (sygnal_webpush_request_time, ...).
WEBPUSH_SEND_TIME = Histogram(
    "sygnal_webpush_request_time", "Time taken to send HTTP request to WebPush endpoint"
)
WEBPUSH_ACTIVE = Gauge("sygnal_active_webpush_requests", "Number of WebPush requests in flight")
WEBPUSH_STATUS = Counter(
    "sygnal_webpush_status_codes",
    "Number of HTTP response status codes received from WebPush endpoints",
    labelnames=["pushkin", "code"],
)
GCM_SEND_TIME = Histogram("sygnal_gcm_request_time", "Time taken to send HTTP request to GCM")
GCM_ACTIVE = Gauge("sygnal_active_gcm_requests", "Number of GCM requests in flight")
GCM_STATUS = Counter(
    "sygnal_gcm_status_codes",
    "Number of HTTP response status codes received from GCM",
    labelnames=["pushkin", "code"],
)
APNS_SEND_TIME = Histogram("sygnal_apns_request_time", "Time taken to send HTTP request to APNS")
APNS_ACTIVE = Gauge("sygnal_active_apns_requests", "Number of APNS requests in flight")
APNS_STATUS = Counter(
    "sygnal_apns_status_codes",
    "Number of HTTP response status codes received from APNS",
    labelnames=["pushkin", "code"],
)
