"""Remembered consents per (sub, client_id)."""

from __future__ import annotations

import sqlite3
from typing import Iterable

from realtime.store.database import Database
from realtime.store.records import scope_set, scope_text


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
