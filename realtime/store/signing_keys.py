"""The signing key ring in a shared store (``[store] url``, SPEC §14).

One ``signing_keys`` row per key: its public JWK, its private key (PKCS#8
DER) sealed with AES-GCM under a key derived from ``[store] key_file``
(HKDF, label :data:`SIGNING_KEYS_LABEL`, its own: it says nothing about
the HMAC key derived from the same file), with the ``kid`` as associated
data, so a row's sealed key cannot be moved to another row.  The schedule
is the key directory's (:mod:`realtime.tokens.keyfiles`): ``retire_at``
NULL while a key may be active (the newest such key is), and, once a
newer key took over, the moment the last token it signed has expired.

The table functions take the database first, like the other tables, and
run in one write transaction each, so two nodes starting at once on an
empty table create one first key (SQLite's single writer; PostgreSQL's
SERIALIZABLE retries the loser, which then finds the winner's key).
:func:`load_ring`, :func:`rotate_ring` and :func:`prune_ring` are the
blocking ring operations over a store; the server runs them in a worker
thread, ``realtime key rotate`` directly.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from typing import Any, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from realtime.store.database import Database
from realtime.store.keyfile import derive_key
from realtime.tokens import keyfiles
from realtime.tokens.keyfiles import SigningKey
from realtime.tokens.keyring import KeyRing

__all__ = [
    "SIGNING_KEYS_LABEL", "KeyRow", "add_signing_key", "insert_rows", "insert_signing_keys", "load_ring", "prune_ring",
    "prune_signing_keys", "ring_stamp", "rotate_ring", "seal", "settle_signing_keys", "signing_key_rows",
    "signing_key_stamp", "unseal",
]

SIGNING_KEYS_LABEL = "realtime/store/signing-keys/v1"
_NONCE = 12
_COLUMNS = "kid, alg, public_jwk, private_enc, created_at, activated_at, retire_at"

#: (kid, alg, public_jwk, private_enc, created_at, activated_at, retire_at)
KeyRow = tuple[str, str, str, str, float, float, "float | None"]


def _aead(store_key: bytes) -> AESGCM:
    return AESGCM(derive_key(store_key, SIGNING_KEYS_LABEL))


def seal(store_key: bytes, key: SigningKey, *, activated_at: float) -> KeyRow:
    """The row of ``key``, its private key sealed under ``store_key`` (the key file's bytes)."""
    der = key.private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(_NONCE)
    sealed = base64.b64encode(nonce + _aead(store_key).encrypt(nonce, der, key.kid.encode())).decode("ascii")
    jwk = json.dumps(keyfiles.public_jwk(key), sort_keys=True, separators=(",", ":"))
    return (key.kid, key.alg, jwk, sealed, key.created_at, activated_at, key.retire_at)


def unseal(store_key: bytes, row: Iterable[Any]) -> SigningKey:
    """The key of a row.

    Raises:
        ValueError: the row does not open under ``store_key`` (another key
            file), or holds a key that is not its kid's or its alg's.
    """
    kid, alg, _jwk, sealed, created_at, _activated_at, retire_at = row
    raw = base64.b64decode(sealed)
    try:
        der = _aead(store_key).decrypt(raw[:_NONCE], raw[_NONCE:], kid.encode())
    except InvalidTag:
        raise ValueError(f"signing key {kid} in the store does not open with this [store] key_file "
                         "(every node needs the same file)") from None
    private_key = serialization.load_der_private_key(der, password=None)
    keyfiles.check_key_type(alg, private_key)
    if keyfiles.jwk_thumbprint(keyfiles.public_jwk_members(private_key.public_key())) != kid:
        raise ValueError(f"signing key {kid} in the store does not match its kid")
    return SigningKey(kid=kid, alg=alg, private_key=private_key, created_at=float(created_at),
                      retire_at=None if retire_at is None else float(retire_at))


# -- table functions ------------------------------------------------------------


def signing_key_rows(db: Database) -> list[KeyRow]:
    """Every key row, oldest first."""
    return [tuple(r) for r in db.read(f"SELECT {_COLUMNS} FROM signing_keys ORDER BY created_at, kid")]  # type: ignore[misc]


def signing_key_stamp(db: Database) -> tuple[tuple[str, float | None], ...]:
    """``(kid, retire_at)`` of every key: cheap to poll, changes with any rotation or pruning."""
    rows = db.read("SELECT kid, retire_at FROM signing_keys ORDER BY kid")
    return tuple((kid, None if retire_at is None else float(retire_at)) for kid, retire_at in rows)


def _schedule_others(c: sqlite3.Connection, active_kid: str, retire_at: float) -> None:
    c.execute("UPDATE signing_keys SET retire_at = ? WHERE retire_at IS NULL AND kid <> ?", (retire_at, active_kid))


def settle_signing_keys(db: Database, candidate: KeyRow, *, retire_at: float) -> bool:
    """Start: make sure a key of the candidate's alg is active; True when the
    candidate was inserted (no key yet, or the active one of another alg).

    As :func:`realtime.tokens.keyfiles.settle`: every other unscheduled key
    gets ``retire_at``; with nothing to change nothing is written.
    """
    def run(c: sqlite3.Connection) -> bool:
        row = c.execute("SELECT kid, alg FROM signing_keys WHERE retire_at IS NULL"
                        " ORDER BY created_at DESC, kid DESC LIMIT 1").fetchone()
        inserted = False
        if row is None or row[1] != candidate[1]:
            c.execute(f"INSERT INTO signing_keys({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", candidate)
            active, inserted = candidate[0], True
        else:
            active = row[0]
        _schedule_others(c, active, retire_at)
        return inserted

    return db.write(run)


def add_signing_key(db: Database, new: KeyRow, *, retire_at: float) -> None:
    """Rotation: ``new`` becomes the active key, every other unscheduled key retires at ``retire_at``."""
    def run(c: sqlite3.Connection) -> None:
        c.execute(f"INSERT INTO signing_keys({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", new)
        _schedule_others(c, new[0], retire_at)

    db.write(run)


def insert_rows(c: sqlite3.Connection, rows: Iterable[KeyRow]) -> None:
    """Rows as they are, inside a caller's transaction (``realtime store copy``)."""
    c.executemany(f"INSERT INTO signing_keys({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", list(rows))


def insert_signing_keys(db: Database, rows: Iterable[KeyRow]) -> None:
    """Rows as they are."""
    rows = list(rows)
    db.write(lambda c: insert_rows(c, rows))


def prune_signing_keys(db: Database, now: float) -> int:
    """Delete keys whose ``retire_at`` has passed (never an unscheduled key); how many."""
    return db.write(lambda c: c.execute("DELETE FROM signing_keys WHERE retire_at IS NOT NULL AND retire_at <= ?",
                                        (now,)).rowcount)


# -- the ring over a store (blocking) ------------------------------------------------


def _ring(store: Any, store_key: bytes) -> KeyRing:
    rows = store.signing_key_rows()
    if not rows:
        raise ValueError("the store holds no signing key")
    return KeyRing(unseal(store_key, row) for row in rows)


def load_ring(store: Any, store_key: bytes, alg: str | None = None, *, retire_after: float = 86400.0,
              now: float) -> KeyRing:
    """The ring in the store; with ``alg``, first make sure a key of ``alg`` is
    active (the first start generates it), as
    :meth:`KeyRing.load_or_create` does for a key directory."""
    if alg is not None:
        keyfiles.check_alg(alg)
        rows = store.signing_key_rows()
        active = [row for row in rows if row[6] is None]
        if not active or active[-1][1] != alg:
            candidate = seal(store_key, keyfiles.new_signing_key(alg, now), activated_at=now)
            store.settle_signing_keys(candidate, retire_at=now + retire_after)
    return _ring(store, store_key)


def rotate_ring(store: Any, store_key: bytes, alg: str, *, retire_after: float, now: float) -> KeyRing:
    """``realtime key rotate``: a new active key of ``alg``; the others verify until ``now + retire_after``."""
    keyfiles.check_alg(alg)
    store.add_signing_key(seal(store_key, keyfiles.new_signing_key(alg, now), activated_at=now),
                          retire_at=now + retire_after)
    return _ring(store, store_key)


def prune_ring(store: Any, store_key: bytes, now: float) -> KeyRing:
    """Drop the keys whose time has passed, then the ring as the store has it."""
    store.prune_signing_keys(now)
    return _ring(store, store_key)


def ring_stamp(ring: KeyRing) -> tuple[tuple[str, float | None], ...]:
    """What :func:`signing_key_stamp` says of a store holding exactly ``ring``."""
    return tuple(sorted((kid, key.retire_at) for kid, key in ring.keys.items()))
