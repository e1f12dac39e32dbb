"""Remembered consents per (sub, client_id)."""

from __future__ import annotations

import sqlite3
from typing import Iterable

from realtime.store.database import Database
from realtime.store.devices import device_access_of
from realtime.store.grants import revoke_grants_of
from realtime.store.records import scope_set, scope_text
from realtime.store.revoked import insert_revoked


def get_consent(db: Database, sub: str, client_id: str) -> frozenset[str] | None:
    row = db.read_one("SELECT scope FROM consents WHERE sub = ? AND client_id = ?", (sub, client_id))
    return None if row is None else scope_set(row[0])


def save_consent(db: Database, sub: str, client_id: str, scope: Iterable[str], now: float) -> None:
    """Remember consent; the stored set grows to the union of what was granted."""

    def run(c: sqlite3.Connection) -> None:
        row = c.execute(
            "SELECT scope FROM consents WHERE sub = ? AND client_id = ?", (sub, client_id)
        ).fetchone()
        merged = set(scope) | (scope_set(row[0]) if row else set())
        c.execute(
            "INSERT INTO consents(sub, client_id, scope, granted_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(sub, client_id) DO UPDATE SET scope = excluded.scope,"
            " granted_at = excluded.granted_at",
            (sub, client_id, scope_text(merged), now),
        )

    db.write(run)


def forget_consent(db: Database, sub: str, client_id: str | None = None) -> None:
    """Forget one client's consent, or (``client_id=None``) all of ``sub``'s."""

    def run(c: sqlite3.Connection) -> None:
        if client_id is None:
            c.execute("DELETE FROM consents WHERE sub = ?", (sub,))
        else:
            c.execute("DELETE FROM consents WHERE sub = ? AND client_id = ?", (sub, client_id))

    db.write(run)


def list_consents(db: Database, sub: str) -> list[tuple[str, frozenset[str], float]]:
    """``(client_id, scope, granted_at)`` of every consent ``sub`` gave, by client."""
    rows = db.read("SELECT client_id, scope, granted_at FROM consents WHERE sub = ? ORDER BY client_id", (sub,))
    return [(r[0], scope_set(r[1]), float(r[2])) for r in rows]


def withdraw_grant(db: Database, sub: str, client_id: str | None, now: float) -> list[tuple[str, float]]:
    """Withdraw what ``sub`` granted ``client_id`` (None: every client), in
    one transaction: the consent, every refresh family, and the access
    tokens issued by those families, by codes and by device codes, which go
    to the revoked table.  Returns those ``(jti, exp)`` pairs for the
    caller to mark in memory and close their sockets (``revoke_access``).
    Calling it again is harmless: the access tokens still unexpired come
    back again and are marked revoked again.
    """

    def run(c: sqlite3.Connection) -> list[tuple[str, float]]:
        if client_id is None:
            c.execute("DELETE FROM consents WHERE sub = ?", (sub,))
        else:
            c.execute("DELETE FROM consents WHERE sub = ? AND client_id = ?", (sub, client_id))
        pairs = set(revoke_grants_of(c, sub, client_id, now))
        pairs.update(device_access_of(c, sub, client_id, now))
        insert_revoked(c, pairs)
        return sorted(pairs)

    return db.write(run)
