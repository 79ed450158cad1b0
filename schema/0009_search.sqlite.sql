-- Server-side search and the user directory (SQLite). See docs/search.md.

-- The searchable text of room events (m.room.message content.body, m.room.name, m.room.topic),
-- normalised (NFKC, case-folded); rowid = events.stream_ordering. The trigram tokenizer answers
-- any substring of 3+ characters, in any script.
CREATE VIRTUAL TABLE event_search USING fts5(value, tokenize = 'trigram');

-- The 1-2 character grams of the same text in scripts written without spaces (Hangul, Han, kana...):
-- trigrams cannot answer "회의" or "밥". Contentless: rows are deleted by giving their grams again,
-- recomputed from event_search.value.
CREATE VIRTUAL TABLE event_search_grams USING fts5(
    grams, content = '', tokenize = 'unicode61 remove_diacritics 0'
);

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
