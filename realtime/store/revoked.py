"""Revoked access-token ``jti`` s, kept until their ``exp``.

The grant rows write here too (:func:`insert_revoked`) when a family or a code's
grant is revoked, inside their own transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

from realtime.store.database import Database
from realtime.store.records import REVOKED_GRACE


def insert_revoked(c: sqlite3.Connection, pairs: Iterable[tuple[str, float]]) -> None:
    """Add ``(jti, exp)`` pairs; a jti already there keeps the later ``exp``."""
    c.executemany(
        "INSERT INTO revoked(jti, exp) VALUES (?, ?)"
        " ON CONFLICT(jti) DO UPDATE SET exp = CASE WHEN excluded.exp > revoked.exp"
        " THEN excluded.exp ELSE revoked.exp END",
        list(pairs),
    )


def revoke_jtis(db: Database, pairs: Iterable[tuple[str, float]]) -> None:
    pairs = list(pairs)
    db.write(lambda c: insert_revoked(c, pairs))


def is_revoked(db: Database, jti: str) -> bool:
    return bool(db.read("SELECT 1 FROM revoked WHERE jti = ?", (jti,)))


def revoked_jtis(db: Database, now: float) -> list[tuple[str, float]]:
    """Every revoked jti whose token has not expired yet (load at start)."""
    rows = db.read("SELECT jti, exp FROM revoked WHERE exp > ?", (now - REVOKED_GRACE,))
    return [(j, float(e)) for j, e in rows]


def sweep(c: sqlite3.Connection, now: float) -> dict[str, int]:
    """Forget revocations of tokens that no verifier would accept any more."""
    return {"revoked": c.execute("DELETE FROM revoked WHERE exp < ?", (now - REVOKED_GRACE,)).rowcount}
