-- Transaction ids are scoped like the request path they came with: per user, device, room and
-- event type (PUT /rooms/{roomId}/send/{eventType}/{txnId}).
CREATE TABLE event_txn_ids_scoped (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, event_type, txn_id)
);
INSERT INTO event_txn_ids_scoped (user_id, device_id, room_id, event_type, txn_id, event_id, created_ts)
    SELECT t.user_id, t.device_id, t.room_id, e.type, t.txn_id, t.event_id, t.created_ts
    FROM event_txn_ids t JOIN events e ON e.event_id = t.event_id;
DROP TABLE event_txn_ids;
ALTER TABLE event_txn_ids_scoped RENAME TO event_txn_ids;
CREATE INDEX event_txn_ids_event ON event_txn_ids(event_id);
