"""OAuth 1.0a rows: nonces, request tokens and access tokens (:mod:`realtime.oauth1`).

The ``oauth1_*`` tables, with their own sweep (:func:`oauth1_sweep`).
"""

from __future__ import annotations

import sqlite3
from typing import Iterable, TypeVar

import attrs

from realtime.store.database import Database, LostRace
from realtime.store.records import (
    OAuth1AccessToken,
    OAuth1RequestToken,
    scope_set,
    scope_text,
)

T = TypeVar("T", OAuth1RequestToken, OAuth1AccessToken)


def _by_token_hash(db: Database, record: type[T], table: str, token_hash: str) -> T | None:
    """The row of ``table`` keyed by ``token_hash``, as ``record``.

    The record's fields are the table's columns, by name, so the SELECT is
    built from them and cannot fall out of step with the positions.
    """
    names = [field.name for field in attrs.fields(record)]
    row = db.read_one(f"SELECT {', '.join(names)} FROM {table} WHERE token_hash = ?", (token_hash,))
    if row is None:
        return None
    values = dict(zip(names, row))
    values["scope"] = scope_set(values["scope"])
    return record(**values)


def oauth1_use_nonce(db: Database, consumer_key: str, token: str, nonce: str, timestamp: int,
                     expires_at: float) -> bool:
    """Record a nonce; False when this (consumer, token, nonce, timestamp)
    was seen before.

    RFC 5849 §3.3: "The nonce value MUST be unique across all requests
    with the same timestamp, client credentials, and token
    combinations."  Kept until ``expires_at`` (the end of the timestamp
    window), so a replay fails after a restart too.
    """

    def run(c: sqlite3.Connection) -> bool:
        cur = c.execute(
            "INSERT INTO oauth1_nonces(consumer_key, token, nonce, timestamp, expires_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (consumer_key, token, nonce, timestamp, expires_at),
        )
        return cur.rowcount == 1

    return db.write(run)


def oauth1_save_request_token(db: Database, token_hash: str, *, client_id: str, secret_enc: str,
                              callback: str, scope: Iterable[str], expires_at: float) -> None:
    db.write(lambda c: c.execute(
        "INSERT INTO oauth1_request_tokens(token_hash, client_id, secret_enc, callback, scope,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash, client_id, secret_enc, callback, scope_text(scope), expires_at),
    ))


def oauth1_get_request_token(db: Database, token_hash: str) -> OAuth1RequestToken | None:
    return _by_token_hash(db, OAuth1RequestToken, "oauth1_request_tokens", token_hash)


def oauth1_authorize_request_token(db: Database, token_hash: str, *, sub: str, scope: Iterable[str],
                                   verifier_hash: str, now: float) -> bool:
    """Bind the user's approval and a verifier to a live, unused request
    token; False if it is gone, used, expired or already approved."""

    def run(c: sqlite3.Connection) -> bool:
        cur = c.execute(
            "UPDATE oauth1_request_tokens SET sub = ?, scope = ?, verifier_hash = ?"
            " WHERE token_hash = ? AND used_at IS NULL AND verifier_hash IS NULL AND expires_at > ?",
            (sub, scope_text(scope), verifier_hash, token_hash, now),
        )
        return cur.rowcount == 1

    return db.write(run)


def oauth1_delete_request_token(db: Database, token_hash: str) -> None:
    db.write(lambda c: c.execute("DELETE FROM oauth1_request_tokens WHERE token_hash = ?", (token_hash,)))


def oauth1_exchange(db: Database, request_hash: str, now: float, access: OAuth1AccessToken) -> bool:
    """Use a request token once and record the access token it buys.

    Returns False (nothing changed) when the request token was already
    used: RFC 5849 §2.3 "the server MUST ... ensure that the temporary
    credentials have not expired or been used before".
    """

    def run(c: sqlite3.Connection) -> None:
        cur = c.execute(
            "UPDATE oauth1_request_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
            (now, request_hash),
        )
        if cur.rowcount != 1:
            raise LostRace()
        c.execute(
            "INSERT INTO oauth1_access_tokens(token_hash, token_id, client_id, sub, scope,"
            " secret_enc, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (access.token_hash, access.token_id, access.client_id, access.sub,
             scope_text(access.scope), access.secret_enc, access.issued_at, access.expires_at),
        )

    return db.claim(run)


def oauth1_get_access_token(db: Database, token_hash: str) -> OAuth1AccessToken | None:
    return _by_token_hash(db, OAuth1AccessToken, "oauth1_access_tokens", token_hash)


def oauth1_revoke_access_token(db: Database, token_hash: str, now: float) -> bool:
    """Mark an access token revoked; False when unknown or already revoked."""
    return db.write(lambda c: c.execute(
        "UPDATE oauth1_access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
        (now, token_hash),
    ).rowcount == 1)


def oauth1_sweep(db: Database, now: float) -> dict[str, int]:
    """Forget nonces past their window, dead request tokens, and access
    tokens that expired or were revoked more than a day ago."""

    def run(c: sqlite3.Connection) -> dict[str, int]:
        return {
            "oauth1_nonces": c.execute(
                "DELETE FROM oauth1_nonces WHERE expires_at < ?", (now,)).rowcount,
            "oauth1_request_tokens": c.execute(
                "DELETE FROM oauth1_request_tokens WHERE expires_at < ?", (now - 3600,)).rowcount,
            "oauth1_access_tokens": c.execute(
                "DELETE FROM oauth1_access_tokens WHERE (revoked_at IS NOT NULL AND revoked_at < ?)"
                " OR (expires_at IS NOT NULL AND expires_at < ?)", (now - 86400, now - 86400)).rowcount,
        }

    return db.write(run)
