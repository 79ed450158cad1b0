-- Sliding sync orders a user's rooms by "bump stamp": the stream ordering of each room's newest
-- event of a few types (messages, encrypted, create...). This index makes that one index probe per
-- (room, type) instead of a scan of the room's events.
CREATE INDEX events_room_type_stream ON events(room_id, type, stream_ordering);
