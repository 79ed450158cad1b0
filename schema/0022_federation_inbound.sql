-- Inbound federation transactions (PUT /_matrix/federation/v1/send/{txnId}), one row per
-- (origin, txn_id) with the response we gave: a retried transaction gets the same answer and its
-- PDUs and EDUs are not processed twice. Rows older than a retention window are pruned.
CREATE TABLE federation_inbound_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_inbound_txns_ts ON federation_inbound_txns(received_ts);
