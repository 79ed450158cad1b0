"""Outbound federation families (Synapse's names where the concept is the same)."""

from __future__ import annotations

from homeserver.metrics import CallbackGauge, counter

transactions_sent = counter(
    "synapse_federation_client_sent_transactions", "Transactions a destination acknowledged"
)
transactions_failed = counter(
    "homeserver_federation_sender_failed_transactions",
    "Transaction attempts that failed (unreachable, 5xx, refused), by how",
    ["reason"],
)
pdus_sent = counter(
    "synapse_federation_client_sent_pdu_destinations", "PDUs acknowledged, counted per destination"
)
edus_sent = counter("synapse_federation_client_sent_edus", "EDUs acknowledged, counted per destination")
pending_pdus = CallbackGauge(
    "synapse_federation_transaction_queue_pending_pdus", "PDUs queued per destination", ["destination"]
)
pending_edus = CallbackGauge(
    "synapse_federation_transaction_queue_pending_edus",
    "EDUs queued per destination (persisted and in memory)",
    ["destination"],
)
catching_up = CallbackGauge(
    "homeserver_federation_sender_destinations_catching_up",
    "Destinations in catch-up mode (they missed PDUs; their rooms' latest events are sent instead)",
)
