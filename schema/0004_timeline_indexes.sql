-- Threads list (GET /rooms/{roomId}/threads) groups a room's m.thread children by root: index the
-- (few) events that carry a relation by room and rel type. Partial, so plain messages cost nothing.
CREATE INDEX events_room_relations ON events(room_id, rel_type, relates_to_id, stream_ordering)
    WHERE rel_type IS NOT NULL;
