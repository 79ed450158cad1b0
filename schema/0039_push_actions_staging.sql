-- Notifications as they are written at persistence, before they reach event_push_actions.
--
-- event_push_actions is indexed by user first (unread counts, GET /notifications, pushers): the
-- rows of one event in a room of N members land in N different pages of each of its indexes, and
-- writing those pages was most of the cost of a send in a big room (~17 ms CPU per message at 300
-- members on SQLite). Here one event's rows are contiguous (every index starts with the event's
-- position), so staging them is cheap; NotificationService folds the staged rows into
-- event_push_actions in bulk, sorted by user, once enough have accumulated (a user's rows then
-- share pages). Readers see the union of both tables: the split is invisible to them.
CREATE TABLE event_push_actions_staging (
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    read BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL
);
CREATE INDEX event_push_actions_staging_room ON event_push_actions_staging(room_id, stream_ordering);
CREATE INDEX event_push_actions_staging_stream ON event_push_actions_staging(stream_ordering);
