-- Administration: account flags, threepids, external ids, rate-limit overrides and the audit log.
-- SQLite variant (the audit id is the rowid; the append-only trigger is SQLite's syntax).

-- Account flags the admin API sets (docs/admin.md): suspended users can read but not send; erased
-- users were deactivated with `erase` (profile cleared).
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;

-- Third-party ids and SSO external ids an admin attached to an account (Synapse's PUT v2/users).
CREATE TABLE user_threepids (
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    validated_at BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids(user_id);

CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    PRIMARY KEY (auth_provider, external_id)
);
CREATE INDEX user_external_ids_user ON user_external_ids(user_id);

-- Per-user override of the message rate limit (0/0 disables limiting for the user).
CREATE TABLE ratelimit_override (
    user_id TEXT PRIMARY KEY,
    messages_per_second BIGINT NOT NULL,
    burst_count BIGINT NOT NULL
);

-- The audit log: append-only. Rows are never updated; only the retention purge deletes old rows.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts BIGINT NOT NULL,          -- when, ms since the epoch
    actor TEXT,                  -- who did it (user id); NULL for the server itself
    action TEXT NOT NULL,        -- dotted name, see docs/admin.md "Audit log"
    target TEXT,                 -- what it was done to (user id, room id, device, token, ...)
    ip TEXT,
    user_agent TEXT,
    detail TEXT NOT NULL DEFAULT '{}'  -- JSON object
);
CREATE INDEX audit_log_ts ON audit_log(ts);
CREATE INDEX audit_log_actor ON audit_log(actor, id);
CREATE INDEX audit_log_action ON audit_log(action, id);
CREATE INDEX audit_log_target ON audit_log(target, id);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
