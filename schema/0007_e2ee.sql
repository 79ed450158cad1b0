-- End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and
-- signatures, the device-list stream, send-to-device inboxes and server-side key backups.
-- Both engines share this file; JSON objects are stored as TEXT.

-- Device identity keys (POST /keys/upload `device_keys`): one row per device.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts_added_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: each row is handed out at most once (DELETE ... RETURNING in /keys/claim).
-- Claimed in upload order: `ts_added_ms` per upload, key_id within one upload.
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts_added_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_order ON e2e_one_time_keys(user_id, device_id, algorithm, ts_added_ms);

-- Fallback keys: at most one per algorithm and device; `used` once handed out by /keys/claim.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- The current cross-signing keys of a user (key_type: master, self_signing, user_signing).
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts_added_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
CREATE INDEX e2e_cross_signing_keys_public ON e2e_cross_signing_keys(public_key);

-- Signatures uploaded through /keys/signatures/upload. The signer is (user_id, key_id); the target
-- is a device (target_device_id = device id) or a cross-signing key (= its public key).
CREATE TABLE e2e_cross_signing_signatures (
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_device_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_device_id, user_id, key_id)
);

-- The device-list stream: user_id's devices or cross-signing keys changed at stream_id.
-- visible_to NULL: every user sharing a room with user_id is told; otherwise only that user
-- (signatures made with a user-signing key are visible to their signer only).
CREATE TABLE device_lists_stream (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    visible_to TEXT,
    ts BIGINT NOT NULL
);
CREATE INDEX device_lists_stream_id ON device_lists_stream(stream_id);

-- Send-to-device messages waiting for their device; deleted once the device syncs past them.
CREATE TABLE device_inbox (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);
CREATE INDEX device_inbox_stream ON device_inbox(stream_id);

-- Idempotency of PUT /sendToDevice/{eventType}/{txnId}, per (user, device, txn id).
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Highest stream position ever reserved for streams whose rows get deleted (to_device), so a
-- restart never hands out a position that a client's sync token already passed.
CREATE TABLE stream_watermarks (
    stream_name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

-- Server-side key backups: versions (never reused: deleted ones stay, marked) and session keys.
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BOOLEAN NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
