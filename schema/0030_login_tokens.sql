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

-- The `state` of every completed SSO callback until its session cookie expires: a callback
-- replayed with a copied cookie is refused, whichever process takes it.
CREATE TABLE sso_used_states (
    state TEXT PRIMARY KEY NOT NULL,
    expiry_ts BIGINT NOT NULL
);
CREATE INDEX sso_used_states_expiry ON sso_used_states(expiry_ts);
