"""Schema, stored-record types and the hashing rule of the state store."""

from __future__ import annotations

import hashlib
from typing import Iterable

import attrs

SCHEMA_VERSION = 1

#: Revocations are kept this long past ``exp``: verification accepts a token
#: until ``exp + leeway`` (as :class:`realtime.tokens.keyring.RevokedSet` does).
REVOKED_GRACE = 300.0

_SCHEMA = """
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


def token_hash(value: str) -> str:
    """SHA-256 hex of a high-entropy token or code: the only form stored."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def scope_text(scope: Iterable[str]) -> str:
    return " ".join(sorted(set(scope)))


def scope_set(text: str | None) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


@attrs.frozen
class CodeRecord:
    code_hash: str
    client_id: str
    redirect_uri: str | None
    code_challenge: str | None
    sub: str
    scope: frozenset[str]
    expires_at: float
    used_at: float | None


@attrs.frozen
class RefreshRecord:
    token_hash: str
    family_id: str
    client_id: str
    sub: str
    scope: frozenset[str]
    issued_at: float
    expires_at: float
    used_at: float | None
    family_revoked: bool
    access_jti: str | None = None
    access_exp: float | None = None


@attrs.frozen
class IssuedTokens:
    """What one grant answered with, as the store records it."""

    access_jti: str
    access_exp: float
    refresh_hash: str | None = None
    refresh_expires_at: float | None = None
    family_id: str | None = None  # None: a new family is made when refresh_hash is set
    client_id: str = ""
    sub: str = ""
    scope: frozenset[str] = frozenset()


@attrs.frozen
class OAuth1RequestToken:
    """A temporary credential (RFC 5849 §2.1) and, once the user approved
    it, who did and the verifier's hash (§2.2)."""

    token_hash: str
    client_id: str
    secret_enc: str
    callback: str  # an absolute URI or "oob"
    scope: frozenset[str]
    expires_at: float
    sub: str | None
    verifier_hash: str | None
    used_at: float | None


@attrs.frozen
class OAuth1AccessToken:
    """Token credentials (RFC 5849 §2.3); ``token_id`` is the principal's ``jti``."""

    token_hash: str
    token_id: str
    client_id: str
    sub: str
    scope: frozenset[str]
    secret_enc: str
    issued_at: float
    expires_at: float | None  # None: until revoked
    revoked_at: float | None


class StoreClosed(RuntimeError):
    pass


