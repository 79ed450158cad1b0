-- Accounts, devices, tokens, profiles, registration tokens, user-interactive auth, account data.
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    shadow_banned BOOLEAN NOT NULL DEFAULT FALSE,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    user_type TEXT,
    appservice_id TEXT
);

CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    displayname TEXT,
    avatar_url TEXT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    hidden BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored as SHA-256 hex digests: a database leak does not leak usable tokens.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    valid_until_ts BIGINT,
    refresh_token_hash TEXT,
    puppets_user_id TEXT
);
CREATE INDEX access_tokens_user_device ON access_tokens(user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expiry_ts BIGINT,
    ultimate_session_expiry_ts BIGINT,
    -- Set when the token was used: the old token stays valid until the new pair is used.
    next_token_hash TEXT
);
CREATE INDEX refresh_tokens_user_device ON refresh_tokens(user_id, device_id);

CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    uri TEXT NOT NULL,
    method TEXT NOT NULL,
    -- JSON object: stage type -> result (e.g. the user id a password stage proved).
    completed TEXT NOT NULL DEFAULT '{}',
    -- JSON object kept across stages (registration: the original request body).
    clientdict TEXT NOT NULL DEFAULT '{}',
    user_id TEXT
);

CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- Global account data has room_id = ''.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data(user_id, stream_id);

CREATE TABLE shared_secret_nonces (
    nonce TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL
);
