-- Sliding sync orders a user's rooms by "bump stamp": the stream ordering of each room's newest
-- event of a few types (messages, encrypted, create...). This index makes that one index probe per
-- (room, type) instead of a scan of the room's events.
CREATE INDEX events_room_type_stream ON events(room_id, type, stream_ordering);

-- Sliding sync connection positions (homeserver/sync/sliding/connections.py): what a connection
-- (user, device, conn_id) was sent up to each position, as JSON. A few rows per connection: the
-- older ones go once the client uses a newer position.
CREATE TABLE sliding_sync_positions (
    position BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    parent BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX sliding_sync_positions_conn ON sliding_sync_positions(user_id, device_id, conn_id, position);
