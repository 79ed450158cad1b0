"""Per-appservice delivery metrics (docs/appservices.md, docs/metrics.md).

The counters keep Synapse's names (`synapse_appservice_api_*`, label `service`) so its dashboards
work; the gauges are read from the live queues at scrape time.
"""

from __future__ import annotations

from homeserver.metrics import CallbackGauge, counter

_SERVICE = ["service"]

sent_transactions = counter(
    "synapse_appservice_api_sent_transactions", "Number of /transactions/ requests sent", _SERVICE
)
failed_transactions = counter(
    "synapse_appservice_api_failed_transactions",
    "Number of /transactions/ requests that failed to send",
    _SERVICE,
)
sent_events = counter("synapse_appservice_api_sent_events", "Number of events sent to the AS", _SERVICE)
sent_ephemeral = counter(
    "synapse_appservice_api_sent_ephemeral", "Number of ephemeral events sent to the AS", _SERVICE
)
sent_todevice = counter(
    "synapse_appservice_api_sent_todevice", "Number of todevice messages sent to the AS", _SERVICE
)
dropped_ephemeral = counter(
    "homeserver_appservice_dropped_ephemeral",
    "Ephemeral events (typing, receipts, presence) dropped because the appservice's buffer was full",
    _SERVICE,
)

pending_events = CallbackGauge(
    "homeserver_appservice_pending_events",
    "Events for the appservice not yet acknowledged (in unacknowledged transactions, plus those"
    " seen and not yet put in a transaction while they fit the in-memory window)",
    _SERVICE,
)
pending_transactions = CallbackGauge(
    "homeserver_appservice_pending_transactions",
    "Transactions built and not yet acknowledged by the appservice",
    _SERVICE,
)
stream_lag = CallbackGauge(
    "homeserver_appservice_events_stream_lag",
    "Events stream positions not yet covered by a transaction for the appservice",
    _SERVICE,
)
up = CallbackGauge(
    "homeserver_appservice_up", "1 while the appservice answers, 0 while backing off", _SERVICE
)
backoff_seconds = CallbackGauge(
    "homeserver_appservice_backoff_seconds", "Current retry interval (0 when the appservice is up)", _SERVICE
)
consecutive_failures = CallbackGauge(
    "homeserver_appservice_consecutive_failures", "Failed attempts since the last success", _SERVICE
)
last_success = CallbackGauge(
    "homeserver_appservice_last_success_timestamp_seconds",
    "Unix time of the last acknowledged transaction (0: none since start)",
    _SERVICE,
)
