"""Revocation cut-offs (SPEC §11 ``POST /api/revoke``): every token of a
``sub`` (optionally of one ``client_id``) issued before a moment is
refused, durably.

A cut-off is one row ``(sub, client_id, issued_before, keep_until)``;
``client_id`` ``''`` means every app.  Access tokens are refused by their
``iat`` (the verifier's in-memory copy, loaded at start from
:func:`live_cutoffs`), refresh families of that ``sub`` begun before the
moment are revoked here, in the same transaction, with their live access
tokens' ``jti`` s.  A row is kept until ``keep_until``: by then no access
token issued before the cut-off can still be valid.
"""

from __future__ import annotations

import sqlite3

from realtime.store.database import Database
from realtime.store.records import REVOKED_GRACE
from realtime.store.revoked import insert_revoked


def add_cutoff(
    db: Database, sub: str, client_id: str, issued_before: float, keep_until: float, now: float
) -> tuple[int, list[tuple[str, float]]]:
    """Record a cut-off and revoke the matching refresh families.

    Returns ``(families revoked now, (jti, exp) of their live access tokens)``.
    A later cut-off for the same pair wins; an earlier one changes nothing.
    """

    def run(c: sqlite3.Connection) -> tuple[int, list[tuple[str, float]]]:
        c.execute(
            "INSERT INTO cutoffs(sub, client_id, issued_before, keep_until) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(sub, client_id) DO UPDATE SET"
            " issued_before = CASE WHEN excluded.issued_before > cutoffs.issued_before"
            " THEN excluded.issued_before ELSE cutoffs.issued_before END,"
            " keep_until = CASE WHEN excluded.keep_until > cutoffs.keep_until"
            " THEN excluded.keep_until ELSE cutoffs.keep_until END",
            (sub, client_id, issued_before, keep_until),
        )
        query = "SELECT family_id FROM families WHERE sub = ? AND revoked = 0 AND created_at < ?"
        args: tuple[object, ...] = (sub, issued_before)
        if client_id:
            query += " AND client_id = ?"
            args += (client_id,)
        families = [row[0] for row in c.execute(query, args).fetchall()]
        pairs: set[tuple[str, float]] = set()
        for family_id in families:
            c.execute("UPDATE families SET revoked = 1 WHERE family_id = ?", (family_id,))
            for table in ("refresh_tokens", "codes"):  # the access tokens each issued
                rows = c.execute(
                    f"SELECT access_jti, access_exp FROM {table} WHERE family_id = ?"
                    " AND access_jti IS NOT NULL AND access_exp > ?", (family_id, now - REVOKED_GRACE))
                pairs.update((j, float(e)) for j, e in rows.fetchall())
        insert_revoked(c, pairs)
        return len(families), sorted(pairs)

    return db.write(run)


def live_cutoffs(db: Database, now: float) -> list[tuple[str, str, float, float]]:
    """Every cut-off still needed: ``(sub, client_id, issued_before, keep_until)``."""
    rows = db.read(
        "SELECT sub, client_id, issued_before, keep_until FROM cutoffs WHERE keep_until > ?",
        (now - REVOKED_GRACE,),
    )
    return [(s, c, float(i), float(k)) for s, c, i, k in rows]


def cutoffs_sweep(db: Database, now: float) -> dict[str, int]:
    """Forget cut-offs no token they would refuse can outlive."""
    return db.write(lambda c: {
        "cutoffs": c.execute("DELETE FROM cutoffs WHERE keep_until < ?", (now - REVOKED_GRACE,)).rowcount})
