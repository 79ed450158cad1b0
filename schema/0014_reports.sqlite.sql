-- Content reports (client-server "Reporting content"): events, rooms and users reported by local
-- users, kept for the server admins (docs/moderation.md). SQLite variant: the id is the rowid.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,          -- 'event', 'room' or 'user'
    reporter TEXT NOT NULL,      -- the reporting user
    room_id TEXT,                -- event and room reports
    event_id TEXT,               -- event reports
    target_user_id TEXT,         -- user reports; for event reports the reported event's sender
    reason TEXT,
    score BIGINT,                -- event reports: the optional score (-100 most offensive .. 0)
    received_ts BIGINT NOT NULL
);
CREATE INDEX reports_kind_id ON reports(kind, id);
CREATE INDEX reports_room ON reports(room_id);
CREATE INDEX reports_reporter ON reports(reporter);
CREATE INDEX reports_target ON reports(target_user_id);
