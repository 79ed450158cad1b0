"""Notifier families: Synapse's `synapse_notifier_*` plus how fast a parked /sync wakes up."""

from __future__ import annotations

from homeserver.metrics import CallbackGauge, counter, histogram

notified_events = counter("synapse_notifier_notified_events", "Room events the notifier was told about")
users_woken_by_stream = counter(
    "synapse_notifier_users_woken_by_stream", "Users with a waiting /sync woken, by stream", ["stream"]
)
wakeup_latency = histogram(
    "homeserver_sync_wakeup_seconds",
    "Seconds from a notification to the parked /sync it woke running again",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
listeners = CallbackGauge("synapse_notifier_listeners", "Parked /sync requests")
users = CallbackGauge("synapse_notifier_users", "Users the notifier tracks")
