-- Device lists of users on other servers (spec "Device Management" over federation), kept in step
-- by m.device_list_update EDUs and resynchronised with GET /user/devices/{userId}.

-- One row per remote user whose device list we track. stream_id is the remote server's stream id
-- of the last update applied (the extremity a following EDU's prev_id must name); stale: an update
-- could not be applied and the resync failed, so the cache must not be trusted until a resync works.
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT,
    stale BOOLEAN NOT NULL DEFAULT FALSE,
    updated_ts BIGINT NOT NULL
);

-- The cached devices of tracked remote users; key_json NULL: a device without identity keys.
CREATE TABLE remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    key_json TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- m.direct_to_device message ids already delivered, per origin server (idempotence of a
-- retransmitted transaction); rows older than a day are dropped.
CREATE TABLE federation_to_device_ids (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX federation_to_device_ids_ts ON federation_to_device_ids(ts);
-- GET /user/devices: the latest change of one local user.
CREATE INDEX device_lists_stream_user ON device_lists_stream(user_id, stream_id);
