-- The event DAG and the room state at every event (one event pipeline, issue #11).
-- All of it is written by the persister in the same group-commit transaction as the events.

-- prev_events of each event (not of outliers, whose place in the DAG is unknown).
CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges(prev_event_id);

-- auth_events of each event: the auth-chain index state resolution walks.
CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
);

-- A room state, stored as the entries that differ from prev_group (a full state when prev_group
-- is NULL). `hops` counts the deltas down to a full group; the persister writes a full group again
-- before it grows past a bound, so reading any state is one bounded recursive query.
CREATE TABLE state_groups (
    id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    prev_group BIGINT,
    hops INTEGER NOT NULL DEFAULT 0
);
-- event_id NULL: the key is absent from this state (only after a state resolution).
CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
);

-- The state before and after each event (NULL: the empty state before a room's create event).
-- After = before for non-state, rejected and outlier-free non-state events; a state event's after
-- group is a one-entry delta on its before group.
CREATE TABLE event_state (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    before_group BIGINT,
    after_group BIGINT
);

-- Events that passed auth against the state before them but not against the current state:
-- stored, never a forward extremity, never sent to clients.
ALTER TABLE events ADD COLUMN soft_failed BOOLEAN NOT NULL DEFAULT FALSE;

-- The state group of the room's current state (NULL for rooms created before this migration,
-- until their next event).
ALTER TABLE rooms ADD COLUMN current_state_group BIGINT;
