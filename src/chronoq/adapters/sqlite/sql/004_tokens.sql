-- API tokens for --auth token (docs/auth.md). Only each token's SHA-256 is stored
-- (token_hash, unique: the lookup key of every authenticated request). token_id is the
-- token's public prefix, what `chronoq token list` shows and `revoke` takes. Instants
-- are epoch microseconds like every other table. expires_at / revoked_at NULL = never.
CREATE TABLE api_tokens (
    token_id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL,
    user_id TEXT NOT NULL,
    allow_shell INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (token_hash);
