"""Account and presence families (Synapse's names), fed by the services."""

from __future__ import annotations

from homeserver.metrics import CallbackGauge, counter

registrations = counter(
    "synapse_user_registrations", "Users registered since start", ["guest", "shadow_banned", "auth_provider"]
)
# As in Synapse, every new device session counts, registration with login included.
logins = counter(
    "synapse_user_logins", "Logins (new device sessions) since start", ["guest", "auth_provider"]
)

presence_updates = counter(
    "synapse_handler_presence_presence_updates", "Presence changes worth telling other users"
)
presence_state_transition = counter(
    "synapse_handler_presence_state_transition", "Presence state changes", ["locality", "from", "to"]
)
presence_bump_active_time = counter(
    "synapse_handler_presence_bump_active_time", "Activity that bumped a user's last-active time"
)
presence_notified = counter(
    "synapse_handler_presence_notified_presence", "Local users told about a presence change"
)
presence_pending_writes = CallbackGauge(
    "homeserver_presence_pending_writes", "Presence rows changed in memory and not yet written (write-behind)"
)
