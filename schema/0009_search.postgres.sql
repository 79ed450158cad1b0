-- Server-side search and the user directory (PostgreSQL). See docs/search.md.

-- pg_trgm serves substring search of 3+ characters. Creating it needs a superuser (or a trusted
-- extension); without it the server falls back to the gram lexemes and warns at startup.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_trgm is unavailable (%); substring search falls back to the gram index', SQLERRM;
END
$$;

-- The searchable text of room events (m.room.message content.body, m.room.name, m.room.topic),
-- normalised (NFKC, case-folded). vector = english lexemes of the text (word search with stemming,
-- ranking) plus its 1-2 character grams of scripts written without spaces (short Korean/CJK queries).
CREATE TABLE event_search (
    stream_ordering BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    value TEXT NOT NULL,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);

-- One row per user the directory can return: local users (from registration and profile changes)
-- and remote users (from their member events). search_name / search_id are normalised for matching.
CREATE TABLE user_directory (
    user_id TEXT PRIMARY KEY,
    display_name TEXT,
    avatar_url TEXT,
    search_name TEXT NOT NULL DEFAULT '',
    search_id TEXT NOT NULL,
    is_local BOOLEAN NOT NULL
);

-- Rooms whose joined members anyone may find: join rule public or history world_readable.
CREATE TABLE user_directory_public_rooms (
    room_id TEXT PRIMARY KEY
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX event_search_trgm ON event_search USING GIN (value gin_trgm_ops);
        CREATE INDEX user_directory_name_trgm ON user_directory USING GIN (search_name gin_trgm_ops);
        CREATE INDEX user_directory_id_trgm ON user_directory USING GIN (search_id gin_trgm_ops);
    END IF;
END
$$;
