"""Push delivery metrics (docs/metrics.md): Synapse's http-pusher counters plus per-kind totals,
pending notifications and how long a notification took from persistence to delivery."""

from __future__ import annotations

from homeserver.metrics import CallbackGauge, counter, histogram

http_pushes_processed = counter(
    "synapse_http_httppusher_http_pushes_processed", "Notifications a push gateway accepted"
)
http_pushes_failed = counter("synapse_http_httppusher_http_pushes_failed", "Failed POSTs to a push gateway")
badge_updates_processed = counter(
    "synapse_http_httppusher_badge_updates_processed", "Badge-only updates a push gateway accepted"
)
badge_updates_failed = counter("synapse_http_httppusher_badge_updates_failed", "Failed badge-only updates")
pushes_sent = counter("homeserver_push_sent", "Notifications delivered, by pusher kind", ["kind"])
pushes_failed = counter("homeserver_push_failed", "Delivery attempts that failed, by pusher kind", ["kind"])
pushes_given_up = counter(
    "homeserver_push_given_up", "Notifications dropped after failing for a day, by pusher kind", ["kind"]
)
pushers_removed = counter(
    "homeserver_push_pushers_rejected", "Pushers removed because the gateway rejected them"
)
delivery_delay = histogram(
    "homeserver_push_delivery_delay_seconds",
    "Seconds from an event's persistence to its notification being delivered, by pusher kind",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400),
)
pushers = CallbackGauge("homeserver_push_pushers", "Running pushers, by kind", ["kind"])
pending = CallbackGauge(
    "homeserver_push_pending_pushers",
    "Pushers with undelivered notifications (waiting or retrying)",
    ["kind"],
)
