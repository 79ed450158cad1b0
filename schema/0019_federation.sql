-- Verify keys of other servers, as fetched directly or through a notary. `key_json` is the whole
-- signed /_matrix/key/v2/server response the key came in, so this server can serve it again as a
-- notary (with its own signature added) without re-fetching it.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,        -- unpadded base64
    valid_until_ts BIGINT NOT NULL,  -- the response's valid_until_ts (old keys: their expired_ts)
    expired_ts BIGINT,               -- set for keys listed under old_verify_keys
    fetched_from TEXT NOT NULL,      -- the server itself or the notary that returned it
    fetched_ts BIGINT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- Per-destination backoff for outbound federation (Synapse's `destinations` table): a failed
-- destination is skipped until retry_last_ts + retry_interval; success resets the interval to 0.
CREATE TABLE destinations (
    destination TEXT PRIMARY KEY,
    failure_ts BIGINT,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval BIGINT NOT NULL DEFAULT 0
);
