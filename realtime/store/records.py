"""Schema, stored-record types and the hashing rule of the state store."""

from __future__ import annotations

import hashlib
from typing import Iterable

import attrs

SCHEMA_VERSION = 1

#: Revocations are kept this long past ``exp``: verification accepts a token
#: until ``exp + leeway`` (as :class:`realtime.tokens.RevokedSet` does).
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


class StoreClosed(RuntimeError):
    pass


