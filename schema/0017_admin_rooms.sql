-- Admin API for rooms, media and server notices; the background jobs that run its long tasks.

-- Background jobs (room deletion, history purge, notice broadcast, ...): batched and resumable.
-- A job is claimed by the runner of the main process; `progress` is rewritten after every batch,
-- so a restart resumes from the last finished batch. Finished jobs are kept for their status
-- endpoints and pruned after a while.
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,               -- 'delete_room', 'purge_history', 'broadcast_notice', ...
    subject TEXT,                     -- what it works on (a room id), for "all jobs of room X"
    params TEXT NOT NULL,             -- JSON: the request, fixed at submission
    status TEXT NOT NULL,             -- scheduled | active | complete | failed
    progress TEXT NOT NULL,           -- JSON: where the job is; the handler's own shape
    error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    completed_ts BIGINT
);
CREATE INDEX jobs_status ON jobs(status);
CREATE INDEX jobs_kind_subject ON jobs(kind, subject);

-- Rooms local users may not join (admin "block room"; may name rooms this server never saw).
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- The server notices room of each local user (the one the notices user created for them).
CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL
);

-- Idempotency of PUT /_synapse/admin/v1/send_server_notice/{txnId}, per admin.
CREATE TABLE server_notice_txns (
    admin_user_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (admin_user_id, txn_id)
);
