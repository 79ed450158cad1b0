-- OpenID tokens (client POST /user/{userId}/openid/request_token), exchanged by other services
-- for the user id at GET /_matrix/federation/v1/openid/userinfo. Only a SHA-256 of the token is
-- kept, like access tokens; expired rows are deleted when new tokens are issued.
CREATE TABLE open_id_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    ts_valid_until_ms BIGINT NOT NULL
);
CREATE INDEX open_id_tokens_valid_until ON open_id_tokens(ts_valid_until_ms);
