-- Rooms, the event DAG, current state and its history, memberships, aliases, transactions.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    created_ts BIGINT NOT NULL,
    -- Published in the local room directory.
    is_public BOOLEAN NOT NULL DEFAULT FALSE
);

-- Every event we hold. stream_ordering is the global persistence order (sync and /messages order);
-- depth the DAG depth. json is the full signed PDU.
CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL UNIQUE,
    depth BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    -- Denormalised for filters and relations.
    contains_url BOOLEAN NOT NULL DEFAULT FALSE,
    relates_to_id TEXT,
    rel_type TEXT,
    -- The redaction event that applies to this event, once one is accepted.
    redacted_by TEXT,
    outlier BOOLEAN NOT NULL DEFAULT FALSE,
    rejected_reason TEXT
);
CREATE INDEX events_room_stream ON events(room_id, stream_ordering);
CREATE INDEX events_relates ON events(relates_to_id, rel_type, stream_ordering);
CREATE INDEX events_room_ts ON events(room_id, origin_server_ts);

-- Idempotency of PUT /send/{txnId} and /redact/{txnId}: per (user, device, txn id).
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE room_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Every change of current state, in stream order: the state of a room at any stream position is
-- the latest delta per (type, state_key) at or before it. Sync uses it for state deltas and
-- history visibility; federation state resolution writes resolved changes here too.
CREATE TABLE state_deltas (
    stream_ordering BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    prev_event_id TEXT,
    PRIMARY KEY (room_id, type, state_key, stream_ordering)
);
CREATE INDEX state_deltas_room_stream ON state_deltas(room_id, stream_ordering);

-- Current membership of every user (local or remote) in every room; answers "which rooms is
-- this user in" and member lists without touching state.
CREATE TABLE room_memberships (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    sender TEXT NOT NULL,
    displayname TEXT,
    avatar_url TEXT,
    forgotten BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships(user_id, membership);

CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases(room_id);
