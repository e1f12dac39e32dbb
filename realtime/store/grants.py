"""OAuth 2 grants: authorization codes and refresh-token families.

A code is single-use; a refresh token is rotated, and using one twice
revokes its family and the access tokens it issued (RFC 6749 §10.5,
RFC 9700 §4.14.2) — unless the reuse is a counted retry within the
grace (:func:`retry_refresh`), which replaces the lost answer instead.
"""

from __future__ import annotations

import secrets
import sqlite3
from typing import Iterable

from realtime.store.database import Database, LostRace
from realtime.store.records import (
    REVOKED_GRACE,
    CodeRecord,
    IssuedTokens,
    RefreshRecord,
    scope_set,
    scope_text,
)
from realtime.store.revoked import insert_revoked


# -- authorization codes ----------------------------------------------------
def save_code(
    db: Database,
    code_hash: str,
    *,
    client_id: str,
    redirect_uri: str | None,
    code_challenge: str | None,
    sub: str,
    scope: Iterable[str],
    expires_at: float,
    sid: str | None = None,
    nonce: str | None = None,
    auth_time: float | None = None,
) -> None:
    """``sid``, ``nonce``, ``auth_time``: the login session, the OIDC nonce
    and the sign-in time, for the id_token and for logout."""
    def run(c: sqlite3.Connection) -> None:
        c.execute(
            "INSERT INTO codes(code_hash, client_id, redirect_uri, code_challenge,"
            " sub, scope, expires_at, sid, nonce, auth_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (code_hash, client_id, redirect_uri, code_challenge, sub,
             scope_text(scope), expires_at, sid, nonce, auth_time),
        )

    db.write(run)


def get_code(db: Database, code_hash: str) -> CodeRecord | None:
    r = db.read_one(
        "SELECT code_hash, client_id, redirect_uri, code_challenge, sub, scope,"
        " expires_at, used_at, sid, nonce, auth_time FROM codes WHERE code_hash = ?",
        (code_hash,),
    )
    return None if r is None else CodeRecord(r[0], r[1], r[2], r[3], r[4], scope_set(r[5]), r[6], r[7],
                                             sid=r[8], nonce=r[9], auth_time=r[10])


def redeem_code(db: Database, code_hash: str, now: float, issued: IssuedTokens) -> bool:
    """Mark the code used and record what was issued, atomically.

    Returns False (and changes nothing) when the code was already used
    or is gone: the caller must then treat the request as a replay.
    """

    def run(c: sqlite3.Connection) -> None:
        family_id = _record_issue(c, now, issued)
        cur = c.execute(
            "UPDATE codes SET used_at = ?, family_id = ?, access_jti = ?, access_exp = ?"
            " WHERE code_hash = ? AND used_at IS NULL",
            (now, family_id, issued.access_jti, issued.access_exp, code_hash),
        )
        if cur.rowcount != 1:
            raise LostRace()

    return db.claim(run)


def revoke_code_grant(db: Database, code_hash: str, now: float) -> list[tuple[str, float]]:
    """A used code came back: revoke everything its first use issued.

    Returns the live access ``(jti, exp)`` pairs now in the revoked
    table; the caller also marks them in memory (``state.revoke_access``).
    """

    def run(c: sqlite3.Connection) -> list[tuple[str, float]]:
        row = c.execute(
            "SELECT family_id, access_jti, access_exp FROM codes WHERE code_hash = ?",
            (code_hash,),
        ).fetchone()
        if row is None:
            return []
        family_id, jti, exp = row
        pairs: list[tuple[str, float]] = []
        if jti and exp and exp > now - REVOKED_GRACE:
            pairs.append((jti, exp))
        if family_id:
            pairs.extend(revoke_family_in(c, family_id, now))
        insert_revoked(c, pairs)
        return sorted(set(pairs))

    return db.write(run)


# -- refresh tokens ---------------------------------------------------------
def record_issue(db: Database, now: float, issued: IssuedTokens) -> str | None:
    """Record a grant that needs no code (password): returns the family id."""
    return db.write(lambda c: _record_issue(c, now, issued))


def _record_issue(c: sqlite3.Connection, now: float, issued: IssuedTokens) -> str | None:
    if issued.refresh_hash is None:
        return issued.family_id
    family_id = issued.family_id or secrets.token_hex(16)
    c.execute(
        "INSERT INTO families(family_id, client_id, sub, created_at, credential, sid, auth_time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (family_id, issued.client_id, issued.sub, now, issued.credential, issued.sid, issued.auth_time),
    )
    if issued.credential is not None:  # a family from before fingerprints: bind it now
        c.execute(
            "UPDATE families SET credential = ? WHERE family_id = ? AND credential IS NULL",
            (issued.credential, family_id),
        )
    c.execute(
        "INSERT INTO refresh_tokens(token_hash, family_id, client_id, sub, scope,"
        " issued_at, expires_at, access_jti, access_exp)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (issued.refresh_hash, family_id, issued.client_id, issued.sub,
         scope_text(issued.scope), now, issued.refresh_expires_at,
         issued.access_jti, issued.access_exp),
    )
    return family_id


def get_refresh(db: Database, refresh_hash: str) -> RefreshRecord | None:
    r = db.read_one(
        "SELECT r.token_hash, r.family_id, r.client_id, r.sub, r.scope, r.issued_at,"
        " r.expires_at, r.used_at, f.revoked, r.access_jti, r.access_exp,"
        " f.created_at, f.credential, r.retries, r.superseded, f.sid, f.auth_time"
        " FROM refresh_tokens r JOIN families f USING (family_id)"
        " WHERE r.token_hash = ?",
        (refresh_hash,),
    )
    return None if r is None else RefreshRecord(
        r[0], r[1], r[2], r[3], scope_set(r[4]), r[5], r[6], r[7], bool(r[8]), r[9], r[10],
        family_created_at=r[11], credential=r[12], retries=r[13], superseded=bool(r[14]),
        sid=r[15], auth_time=r[16],
    )


def rotate_refresh(db: Database, old_hash: str, now: float, issued: IssuedTokens) -> bool:
    """Use ``old_hash`` once and record its successor in the same family.

    Returns False (nothing changed) if the old token was already used or
    its family revoked: the caller treats that as reuse.
    """

    def run(c: sqlite3.Connection) -> None:
        cur = c.execute(
            "UPDATE refresh_tokens SET used_at = ?, successor = ? WHERE token_hash = ? AND used_at IS NULL"
            " AND family_id IN (SELECT family_id FROM families WHERE revoked = 0)",
            (now, issued.refresh_hash, old_hash),
        )
        if cur.rowcount != 1:
            raise LostRace()
        _record_issue(c, now, issued)

    return db.claim(run)


def retry_refresh(
    db: Database, old_hash: str, now: float, issued: IssuedTokens, *, grace: float, limit: int
) -> list[tuple[str, float]] | None:
    """Answer a used refresh token again: a client retrying after a lost answer.

    Allowed, in one transaction, only while ``old_hash`` was rotated at
    most ``grace`` seconds ago, has been retried fewer than ``limit``
    times, was not itself superseded, its family is live, and the answer
    it gave last (its successor) was never used: a successor that was
    used shows the answer arrived, so this is a replay.  The conditional
    UPDATE is the single winner: of retries racing for the last allowed
    one, exactly one finds ``retries < limit``.

    The winner's previous answer is revoked: its refresh token is marked
    superseded (presenting it later is a reuse) and its access token goes
    to the revoked table.  Returns those ``(jti, exp)`` pairs for the
    caller to mark in memory (``state.revoke_access``, which closes live
    sockets), or None when the retry is not allowed and nothing changed:
    the caller then revokes the family.
    """

    def run(c: sqlite3.Connection) -> list[tuple[str, float]]:
        row = c.execute("SELECT successor FROM refresh_tokens WHERE token_hash = ?", (old_hash,)).fetchone()
        if row is None or row[0] is None:
            raise LostRace()
        lost = row[0]
        cur = c.execute(
            "UPDATE refresh_tokens SET retries = retries + 1, successor = ?"
            " WHERE token_hash = ? AND used_at IS NOT NULL AND used_at >= ?"
            " AND retries < ? AND superseded = 0 AND client_id = ?"
            " AND family_id IN (SELECT family_id FROM families WHERE revoked = 0)"
            " AND EXISTS (SELECT 1 FROM refresh_tokens s WHERE s.token_hash = ?"
            "             AND s.used_at IS NULL AND s.superseded = 0)",
            (issued.refresh_hash, old_hash, now - grace, limit, issued.client_id, lost),
        )
        if cur.rowcount != 1:
            raise LostRace()
        c.execute("UPDATE refresh_tokens SET superseded = 1, used_at = ? WHERE token_hash = ?", (now, lost))
        pairs = [
            (jti, float(exp))
            for jti, exp in c.execute(
                "SELECT access_jti, access_exp FROM refresh_tokens WHERE token_hash = ?"
                " AND access_jti IS NOT NULL AND access_exp > ?",
                (lost, now - REVOKED_GRACE),
            )
        ]
        insert_revoked(c, pairs)
        _record_issue(c, now, issued)
        return pairs

    try:
        return db.write(run)
    except LostRace:
        return None


def revoke_family(db: Database, family_id: str, now: float) -> list[tuple[str, float]]:
    """Revoke a refresh family and its live access tokens.

    RFC 9700 §4.14.2: "If a refresh token is compromised and subsequently
    used by both the attacker and the legitimate client, one of them
    will present an invalidated refresh token, which will inform the
    authorization server of the breach.  The authorization server cannot
    determine which party submitted the invalid refresh token, but it
    will revoke the active refresh token."
    """

    def run(c: sqlite3.Connection) -> list[tuple[str, float]]:
        pairs = revoke_family_in(c, family_id, now)
        insert_revoked(c, pairs)
        return pairs

    return db.write(run)


def revoke_family_in(c: sqlite3.Connection, family_id: str, now: float) -> list[tuple[str, float]]:
    """Inside a transaction: mark ``family_id`` revoked; returns its live access pairs."""
    c.execute("UPDATE families SET revoked = 1 WHERE family_id = ?", (family_id,))
    rows = c.execute(
        "SELECT access_jti, access_exp FROM refresh_tokens WHERE family_id = ?"
        " AND access_jti IS NOT NULL AND access_exp > ?",
        (family_id, now - REVOKED_GRACE),
    ).fetchall()
    rows += c.execute(
        "SELECT access_jti, access_exp FROM codes WHERE family_id = ?"
        " AND access_jti IS NOT NULL AND access_exp > ?",
        (family_id, now - REVOKED_GRACE),
    ).fetchall()
    return sorted({(j, float(e)) for j, e in rows})


# -- housekeeping -----------------------------------------------------------
def sweep(c: sqlite3.Connection, now: float) -> dict[str, int]:
    """Delete codes, refresh tokens and families that can no longer matter.

    Used codes are kept until their expiry plus a margin so a replay
    inside that window still finds them and revokes the grant.
    """
    counts = {}
    counts["codes"] = c.execute(
        "DELETE FROM codes WHERE expires_at < ? AND"
        " (access_exp IS NULL OR access_exp < ?)",
        (now - 3600, now),
    ).rowcount
    counts["refresh_tokens"] = c.execute(
        "DELETE FROM refresh_tokens WHERE expires_at < ? AND"
        " (access_exp IS NULL OR access_exp < ?)",
        (now, now),
    ).rowcount
    counts["families"] = c.execute(
        "DELETE FROM families WHERE family_id NOT IN"
        " (SELECT family_id FROM refresh_tokens)"
        " AND family_id NOT IN (SELECT family_id FROM codes WHERE family_id IS NOT NULL)",
    ).rowcount
    return counts


# -- for the other table modules and the account page ------------------------
def insert_issue(c: sqlite3.Connection, now: float, issued: IssuedTokens) -> str | None:
    """Record what a grant issued inside a caller's transaction (a device
    code's redemption, :mod:`realtime.store.devices`); the family id."""
    return _record_issue(c, now, issued)


def live_families_of(db: Database, sub: str, now: float) -> list[tuple[str, str, float]]:
    """``(client_id, family_id, created_at)`` of every unrevoked refresh
    family of ``sub`` that still has an unexpired refresh token."""
    rows = db.read(
        "SELECT f.client_id, f.family_id, f.created_at FROM families f WHERE f.sub = ? AND f.revoked = 0"
        " AND EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.family_id = f.family_id AND r.expires_at > ?"
        "             AND r.used_at IS NULL)"
        " ORDER BY f.client_id, f.created_at",
        (sub, now),
    )
    return [(r[0], r[1], float(r[2])) for r in rows]


def revoke_grants_of(c: sqlite3.Connection, sub: str, client_id: str | None, now: float) -> list[tuple[str, float]]:
    """Inside a caller's transaction: revoke every refresh family of
    ``sub`` (for ``client_id``, or every client) and return the live
    access tokens they and the user's authorization codes issued."""
    sql = "SELECT family_id FROM families WHERE sub = ? AND revoked = 0"
    args: tuple = (sub,)
    if client_id is not None:
        sql += " AND client_id = ?"
        args += (client_id,)
    pairs: set[tuple[str, float]] = set()
    for (family_id,) in c.execute(sql, args).fetchall():
        pairs.update(revoke_family_in(c, family_id, now))
    sql = "SELECT access_jti, access_exp FROM codes WHERE sub = ? AND access_jti IS NOT NULL AND access_exp > ?"
    args = (sub, now - REVOKED_GRACE)
    if client_id is not None:
        sql += " AND client_id = ?"
        args += (client_id,)
    pairs.update((j, float(e)) for j, e in c.execute(sql, args))
    return sorted(pairs)
