"""The SQLite schema of the state store (``state_dir/state.sqlite3``).

Every statement is ``IF NOT EXISTS`` so opening an existing file is a
no-op; :data:`SCHEMA_VERSION` is written to ``meta`` once, for the day a
migration needs to know what it starts from.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT,
    code_challenge TEXT,
    sub            TEXT NOT NULL,
    scope          TEXT NOT NULL,
    expires_at     REAL NOT NULL,
    used_at        REAL,
    family_id      TEXT,
    access_jti     TEXT,
    access_exp     REAL
);
CREATE TABLE IF NOT EXISTS families (
    family_id  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL REFERENCES families(family_id),
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    issued_at  REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at    REAL,
    access_jti TEXT,
    access_exp REAL
);
CREATE INDEX IF NOT EXISTS refresh_by_family ON refresh_tokens(family_id);
CREATE TABLE IF NOT EXISTS revoked (
    jti TEXT PRIMARY KEY,
    exp REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS consents (
    sub        TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    granted_at REAL NOT NULL,
    PRIMARY KEY (sub, client_id)
);
-- OAuth 1.0a (RFC 5849).  Tokens are stored as SHA-256 of the token, their
-- shared secrets AES-GCM-encrypted under state_dir/oauth1.key.
CREATE TABLE IF NOT EXISTS oauth1_request_tokens (
    token_hash    TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL,
    secret_enc    TEXT NOT NULL,
    callback      TEXT NOT NULL,
    scope         TEXT NOT NULL,
    expires_at    REAL NOT NULL,
    sub           TEXT,
    verifier_hash TEXT,
    used_at       REAL
);
CREATE TABLE IF NOT EXISTS oauth1_access_tokens (
    token_hash TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL UNIQUE,
    client_id  TEXT NOT NULL,
    sub        TEXT NOT NULL,
    scope      TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    issued_at  REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS oauth1_nonces (
    consumer_key TEXT NOT NULL,
    token        TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    timestamp    INTEGER NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (consumer_key, token, nonce, timestamp)
);
CREATE INDEX IF NOT EXISTS oauth1_nonces_expiry ON oauth1_nonces(expires_at);
"""
