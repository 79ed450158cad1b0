"""/sync families (Synapse's names)."""

from __future__ import annotations

from homeserver.metrics import CallbackGauge, counter

nonempty = counter(
    "synapse_handlers_sync_nonempty",
    "Non-empty /sync responses, by type (initial_sync, full_state_sync, incremental_sync) and whether"
    " members were lazy-loaded",
    ["type", "lazy_loaded"],
)

# WebSocket sync (docs/websocket.md); our own names, Synapse has no such transport.
websocket_connections = CallbackGauge(
    "homeserver_sync_websocket_connections", "Open WebSocket sync connections (authenticated)"
)
websocket_frames = counter(
    "homeserver_sync_websocket_frames", "Sync frames pushed over WebSocket connections"
)
websocket_requests = counter(
    "homeserver_sync_websocket_requests",
    "Client requests served over WebSocket connections, by status class",
    ["status"],
)
websocket_closes = counter(
    "homeserver_sync_websocket_closes",
    "WebSocket sync connections closed by the server, by close code",
    ["code"],
)
