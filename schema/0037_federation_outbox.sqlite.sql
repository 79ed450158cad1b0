-- EDUs a process without the federation sender queued for other servers (to-device messages for
-- remote users, written inside the send's own transaction on main), waiting for the
-- federation_sender worker to move them into its queue (federation_edu_queue, with its own
-- sequence numbers). Empty when main sends itself (docs/scale-out.md). SQLite variant: the id is an autoincrement rowid.
CREATE TABLE federation_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    edu_type TEXT NOT NULL,
    coalesce_key TEXT,
    content TEXT NOT NULL
);
