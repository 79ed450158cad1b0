-- Compliance: GDPR-erased users (their events are served pruned to users who were not joined
-- when the event was sent, as Synapse's `erased_users`).
CREATE TABLE erased_users (
    user_id TEXT PRIMARY KEY
);
