-- Read receipts (m.read, m.read.private): the latest receipt per (room, type, user, thread).
-- thread_id '' is an unthreaded receipt (so the primary key needs no NULL handling).
-- stream_id orders changes for /sync (the `receipts` stream); event_stream_ordering is the receipted
-- event's position, which only moves forward (the upsert refuses to go back).
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    event_stream_ordering BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts(stream_id);
CREATE INDEX receipts_user_room ON receipts(user_id, room_id);

-- Presence of local users: the aggregated state (devices are tracked in memory only).
-- stream_id is the `presence` stream position of the user's latest change.
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    last_user_sync_ts BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence(stream_id);
