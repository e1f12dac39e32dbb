"""Browser login sessions (OpenID Connect, SPEC §8).

The cookie holds a random id; only its SHA-256 is stored (``id_hash``),
so a copy of the database opens no browser's session.  ``sid`` is the
session's public name: it goes into id_tokens and is recorded with the
codes and refresh families issued in the session, which is how a logout
finds what to revoke.
"""

from __future__ import annotations

import sqlite3

from realtime.store.database import Database
from realtime.store.grants import revoke_family_in
from realtime.store.records import REVOKED_GRACE, LoginSession
from realtime.store.revoked import insert_revoked


def save_login_session(db: Database, session: LoginSession, replaces: str | None = None) -> None:
    """Store ``session``; in the same transaction end the session whose id
    hash is ``replaces`` (a sign-in rotates the cookie: no fixation).

    The sid may be the replaced session's (the same user signing in again
    keeps one session, so its tokens stay revocable by one logout).
    """

    def run(c: sqlite3.Connection) -> None:
        if replaces is not None:
            c.execute("DELETE FROM login_sessions WHERE id_hash = ?", (replaces,))
        c.execute("DELETE FROM login_sessions WHERE sid = ?", (session.sid,))
        c.execute(
            "INSERT INTO login_sessions(id_hash, sid, sub, credential, auth_time, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session.id_hash, session.sid, session.sub, session.credential, session.auth_time,
             session.expires_at),
        )

    db.write(run)


def get_login_session(db: Database, id_hash: str, now: float) -> LoginSession | None:
    """The live session whose cookie id hashes to ``id_hash``; None once expired or ended."""
    r = db.read_one(
        "SELECT id_hash, sid, sub, credential, auth_time, expires_at FROM login_sessions"
        " WHERE id_hash = ? AND expires_at > ?",
        (id_hash, now),
    )
    return None if r is None else LoginSession(r[0], r[1], r[2], r[3], r[4], r[5])


def end_login_session(db: Database, sid: str, now: float) -> list[tuple[str, float]]:
    """Log out: delete session ``sid`` and revoke what was issued in it.

    In one transaction: the session row goes, every refresh family whose
    code was issued in the session is revoked, codes of the session not
    yet exchanged expire, and the live access tokens of both (the codes'
    own and the families') go to the revoked table.  Returns those
    ``(jti, exp)`` pairs for the caller to mark in memory
    (``state.revoke_access``, which closes live sockets on every node).
    Idempotent: ending an ended session revokes nothing new and returns
    the same pairs again, harmless to mark twice.
    """

    def run(c: sqlite3.Connection) -> list[tuple[str, float]]:
        c.execute("DELETE FROM login_sessions WHERE sid = ?", (sid,))
        c.execute("UPDATE codes SET expires_at = ? WHERE sid = ? AND used_at IS NULL AND expires_at > ?",
                  (now, sid, now))
        pairs = {
            (jti, float(exp))
            for jti, exp in c.execute(
                "SELECT access_jti, access_exp FROM codes WHERE sid = ?"
                " AND access_jti IS NOT NULL AND access_exp > ?",
                (sid, now - REVOKED_GRACE),
            )
        }
        families = [row[0] for row in c.execute("SELECT family_id FROM families WHERE sid = ?", (sid,))]
        for family_id in families:
            pairs.update(revoke_family_in(c, family_id, now))
        found = sorted(pairs)
        insert_revoked(c, found)
        return found

    return db.write(run)


def sweep(c: sqlite3.Connection, now: float) -> dict[str, int]:
    return {"login_sessions": c.execute("DELETE FROM login_sessions WHERE expires_at <= ?", (now,)).rowcount}
