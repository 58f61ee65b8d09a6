-- API tokens for --auth token (docs/auth.md). Only each token's SHA-256 is stored
-- (token_hash, unique: the lookup key of every authenticated request); token_id is the
-- token's public prefix, what `chronoq token list` shows and `revoke` takes.
-- expires_at / revoked_at NULL = never.
CREATE TABLE api_tokens (
    token_id text PRIMARY KEY,
    token_hash bytea NOT NULL,
    user_id text NOT NULL,
    allow_shell boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
