-- Where and with what each device was last seen: one row per (device, address, user agent),
-- as Synapse's user_ips. Written in batches from memory (services/client_ips.py), read by admins.
CREATE TABLE user_ips (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, ip, user_agent)
);
CREATE INDEX user_ips_last_seen ON user_ips(user_id, last_seen);
