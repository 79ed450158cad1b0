-- Outbound federation (homeserver/federation/sender/): per-destination persisted queues, so a
-- restart loses nothing and, once a transaction is acknowledged, sends nothing twice.

-- How far the sender has read each stream it follows (the events stream: which local events
-- have been queued; device lists: which changes became EDUs). Moved in the same transaction as
-- the queue rows the read produced.
CREATE TABLE federation_stream_positions (
    stream TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);

-- PDUs waiting for a destination, oldest first. Capped per destination: past the cap the
-- destination's rows are dropped and it goes into catch-up mode (see federation_destination_queues).
CREATE TABLE federation_pdu_queue (
    destination TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

-- The newest local event of each room that was meant for each destination (Synapse's
-- destination_rooms): what catch-up compares with last_successful_stream_ordering.
CREATE TABLE federation_destination_rooms (
    destination TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, room_id)
);
CREATE INDEX federation_destination_rooms_room ON federation_destination_rooms(room_id);

-- EDUs whose loss matters (to-device, device-list and signing-key updates), oldest first.
-- coalesce_key: a newer EDU with the same (destination, type, key) replaces a queued one.
CREATE TABLE federation_edu_queue (
    destination TEXT NOT NULL,
    seq BIGINT NOT NULL,
    edu_type TEXT NOT NULL,
    coalesce_key TEXT,
    content TEXT NOT NULL,
    PRIMARY KEY (destination, seq)
);

-- Per destination: catch-up mode, the transaction counter, and the transaction in flight (its
-- id and exact body, so a retry - also after a crash - sends the same transaction again and the
-- receiver can deduplicate it).
CREATE TABLE federation_destination_queues (
    destination TEXT PRIMARY KEY,
    last_successful_stream_ordering BIGINT,
    catching_up BOOLEAN NOT NULL DEFAULT FALSE,
    txn_seq BIGINT NOT NULL DEFAULT 0,
    txn_id TEXT,
    txn_body TEXT,
    txn_pdus TEXT,      -- JSON list of the stream orderings in the transaction
    txn_edus TEXT       -- JSON list of the persisted EDU seqs in the transaction
);

-- The last device-list stream id sent to each destination per local user: the next update's
-- prev_id (m.device_list_update).
CREATE TABLE federation_device_list_sent (
    destination TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (destination, user_id)
);

-- Which devices a device-list change was about (the change itself is a device_lists_stream row);
-- lets the sender announce each device, or its deletion, to other servers.
CREATE TABLE device_lists_changed_devices (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX device_lists_changed_devices_stream ON device_lists_changed_devices(stream_id);
