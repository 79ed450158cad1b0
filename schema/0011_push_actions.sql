-- Notifications: the push actions an event produced for each local member it notifies.
-- `read` flips when the user's read receipt passes the event; unread counts are the unread rows.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    read BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_unread ON event_push_actions(user_id, read, room_id, stream_ordering);
CREATE INDEX event_push_actions_user_stream ON event_push_actions(user_id, stream_ordering);
