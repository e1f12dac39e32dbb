"""Device codes of the device authorization grant (RFC 8628).

One row per ``POST /oauth2/device_authorization``: the SHA-256 of the
device code (the poller's secret) and of the normalised user code (what
the person types), the client, the scope asked for, and the life of the
request: ``pending`` until the user acts, then ``approved`` (with the
user and the scope granted) or ``denied``, and ``used`` once the tokens
went out.  Every change of status is one conditional UPDATE, so of two
racing requests exactly one wins (the store is the single winner, as for
authorization codes).
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

import attrs

from realtime.store.database import Database, LostRace
from realtime.store.grants import insert_issue
from realtime.store.records import REVOKED_GRACE, IssuedTokens, scope_set, scope_text

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
USED = "used"

#: RFC 8628 §3.5: "the client MUST wait at least 5 seconds" more after a
#: ``slow_down``; the stored interval grows by this much each time.
SLOW_DOWN_STEP = 5.0


@attrs.frozen
class DeviceRecord:
    device_hash: str
    user_hash: str
    client_id: str
    scope: frozenset[str]  # asked for; once approved, what the user granted
    expires_at: float
    interval: float
    status: str  # PENDING, APPROVED, DENIED or USED
    sub: str | None
    created_at: float


@attrs.frozen
class DevicePoll:
    """A poll's view of its device code: the row after the poll, and
    whether the poll came sooner than the interval allowed."""

    record: DeviceRecord
    too_fast: bool


_COLUMNS = "device_hash, user_hash, client_id, scope, expires_at, interval, status, sub, created_at"


def _record(r: tuple) -> DeviceRecord:
    return DeviceRecord(r[0], r[1], r[2], scope_set(r[3]), r[4], r[5], r[6], r[7], r[8])


def save_device_code(db: Database, device_hash: str, user_hash: str, *, client_id: str,
                     scope: Iterable[str], now: float, expires_at: float, interval: float) -> bool:
    """Store a new request; False (nothing stored) when a live request
    already has this user code: the caller draws another one."""

    def run(c: sqlite3.Connection) -> None:
        # A user code of an expired request may be drawn again.
        c.execute("DELETE FROM device_codes WHERE user_hash = ? AND expires_at <= ?", (user_hash, now))
        cur = c.execute(
            f"INSERT INTO device_codes({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)"
            " ON CONFLICT DO NOTHING",
            (device_hash, user_hash, client_id, scope_text(scope), expires_at, interval, PENDING, now),
        )
        if cur.rowcount != 1:  # a live request holds this user code (or, by chance, the device code)
            raise LostRace()

    return db.claim(run)


def get_device_by_user_code(db: Database, user_hash: str) -> DeviceRecord | None:
    r = db.read_one(f"SELECT {_COLUMNS} FROM device_codes WHERE user_hash = ?", (user_hash,))
    return None if r is None else _record(r)


def decide_device_code(db: Database, user_hash: str, *, sub: str, approved: bool,
                       scope: Iterable[str], now: float) -> bool:
    """The user's answer: approve (for ``sub``, granting ``scope``) or deny.

    Single winner: only a pending, unexpired request changes; False when
    it was decided already (another tab), expired or is gone.
    """

    def run(c: sqlite3.Connection) -> None:
        cur = c.execute(
            "UPDATE device_codes SET status = ?, sub = ?, scope = ?, decided_at = ?"
            " WHERE user_hash = ? AND status = ? AND expires_at > ?",
            (APPROVED if approved else DENIED, sub, scope_text(scope), now, user_hash, PENDING, now),
        )
        if cur.rowcount != 1:
            raise LostRace()

    return db.claim(run)


def poll_device_code(db: Database, device_hash: str, now: float) -> DevicePoll | None:
    """Record a token-endpoint poll; None for an unknown device code.

    RFC 8628 §3.5 ``slow_down``: a poll sooner than ``interval`` after the
    previous one is flagged and the interval grows by 5 s "for this and
    all subsequent requests".  Read and update are one transaction, so
    concurrent polls cannot all slip in between.
    """

    def run(c: sqlite3.Connection) -> DevicePoll | None:
        row = c.execute(
            f"SELECT {_COLUMNS}, last_poll FROM device_codes WHERE device_hash = ?", (device_hash,)
        ).fetchone()
        if row is None:
            return None
        record, last_poll = _record(row), row[9]
        too_fast = last_poll is not None and now - last_poll < record.interval
        interval = record.interval + SLOW_DOWN_STEP if too_fast else record.interval
        c.execute("UPDATE device_codes SET last_poll = ?, interval = ? WHERE device_hash = ?",
                  (now, interval, device_hash))
        return DevicePoll(attrs.evolve(record, interval=interval), too_fast)

    return db.write(run)


def redeem_device_code(db: Database, device_hash: str, now: float, issued: IssuedTokens) -> bool:
    """Mark an approved device code used and record what was issued, in
    one transaction; False (nothing changed) when it is not approved any
    more: another poll won, so this one must not answer tokens."""

    def run(c: sqlite3.Connection) -> None:
        family_id = insert_issue(c, now, issued)
        cur = c.execute(
            "UPDATE device_codes SET status = ?, family_id = ?, access_jti = ?, access_exp = ?"
            " WHERE device_hash = ? AND status = ? AND expires_at > ?",
            (USED, family_id, issued.access_jti, issued.access_exp, device_hash, APPROVED, now),
        )
        if cur.rowcount != 1:
            raise LostRace()

    return db.claim(run)


def device_access_of(c: sqlite3.Connection, sub: str, client_id: str | None, now: float) -> list[tuple[str, float]]:
    """The live access tokens that device codes of ``sub`` (for
    ``client_id``, or every client) issued; inside a caller's transaction."""
    sql = ("SELECT access_jti, access_exp FROM device_codes WHERE sub = ? AND access_jti IS NOT NULL"
           " AND access_exp > ?")
    args: tuple = (sub, now - REVOKED_GRACE)
    if client_id is not None:
        sql += " AND client_id = ?"
        args += (client_id,)
    return [(j, float(e)) for j, e in c.execute(sql, args)]


def sweep(c: sqlite3.Connection, now: float) -> dict[str, int]:
    """Forget requests past their expiry whose access token (if any) has
    expired too: until then withdrawing the app must still find it."""
    return {"device_codes": c.execute(
        "DELETE FROM device_codes WHERE expires_at < ? AND (access_exp IS NULL OR access_exp < ?)",
        (now, now - REVOKED_GRACE),
    ).rowcount}
