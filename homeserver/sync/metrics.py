"""/sync families (Synapse's names)."""

from __future__ import annotations

from homeserver.metrics import counter

nonempty = counter(
    "synapse_handlers_sync_nonempty",
    "Non-empty /sync responses, by type (initial_sync, full_state_sync, incremental_sync) and whether"
    " members were lazy-loaded",
    ["type", "lazy_loaded"],
)
