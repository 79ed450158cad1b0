-- Pushing events to application services (homeserver/appservice/sender/).
--
-- Per appservice: how far the events and to-device streams have been turned into transactions
-- (everything at or below a position is in a transaction below, acknowledged or not), and the last
-- transaction id handed out. A transaction is created together with the positions it covers, in
-- one database transaction, so a restart neither loses nor repeats events.
CREATE TABLE appservice_positions (
    as_id TEXT PRIMARY KEY,
    events_position BIGINT NOT NULL,
    to_device_position BIGINT NOT NULL,
    last_txn_id BIGINT NOT NULL DEFAULT 0
);

-- Transactions built but not yet acknowledged by the appservice, oldest first. `content` is JSON:
-- event ids (serialised at send time), ephemeral events, to-device messages, device-list changes.
-- A retry (also after a restart) sends the same txn_id; the row is deleted once the appservice
-- answered 2xx.
CREATE TABLE appservice_txns (
    as_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (as_id, txn_id)
);
