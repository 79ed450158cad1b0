-- Single-use login tokens (m.login.token): issued at the end of an SSO login, or by a signed-in
-- device for another (POST /login/get_token). Only their SHA-256 is stored.
CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    expiry_ts BIGINT NOT NULL,
    used_ts BIGINT,
    auth_provider_id TEXT
);
CREATE INDEX login_tokens_expiry ON login_tokens(expiry_ts);
