-- Push delivery (docs/push.md): each pusher remembers the stream position it has delivered up to
-- (so a restart resumes without duplicates or losses) and since when it has been failing (to give
-- up on one notification after a day, as Synapse). A pusher starts at the position current when it
-- was set: no notifications for events from before it existed.
ALTER TABLE pushers ADD COLUMN last_stream_ordering BIGINT;
ALTER TABLE pushers ADD COLUMN last_success_ts BIGINT;
ALTER TABLE pushers ADD COLUMN failing_since BIGINT;
UPDATE pushers SET last_stream_ordering = (SELECT COALESCE(MAX(stream_ordering), 0) FROM events);

-- Email pushers: per room, when the last digest mentioning it was sent and the current throttle
-- (Synapse's pusher_throttle: 10 minutes, multiplied on repeated notifications, up to a day).
CREATE TABLE pusher_throttle (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    room_id TEXT NOT NULL,
    last_sent_ts BIGINT NOT NULL,
    throttle_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey, room_id)
);
