"""Pending provider logins (:mod:`realtime.oauth.providers.pending`): the
authorization request a browser left for an external provider, kept until
the provider sends the browser back, possibly to another node.

One row per login, keyed by the SHA-256 of the ``state`` sent to the
provider.  The row holds what the callback checks in the clear (the
provider, the SHA-256 of the browser's ``rt_csrf`` cookie) and the rest
sealed by the caller (``sealed``: the request, the redirect URI and the
PKCE verifier), so the table alone reveals no verifier.

Bounded: :func:`add_provider_login` deletes expired rows first, then, in
the same transaction, the oldest rows of the same address beyond
``per_address`` and the oldest of all beyond ``total``, so no one can
grow the table past ``total`` rows.  Adds run one at a time (the
``lock`` of :meth:`~realtime.store.database.Database.write`), so
concurrent ones wait briefly instead of failing serialization.  :func:`take_provider_login` deletes
the row it returns: of two callbacks racing for one login, on one node
or two, exactly one gets it.
"""

from __future__ import annotations

import sqlite3

import attrs

from realtime.store.database import Database

__all__ = ["PendingRow", "add_provider_login", "provider_logins_count", "take_provider_login"]

_COLUMNS = "state_hash, provider, binding, address, sealed, created_at, expires_at"


@attrs.frozen
class PendingRow:
    """A pending login as stored (``sealed`` is opened by the oauth layer)."""

    state_hash: str
    provider: str
    binding: str  # SHA-256 of the browser's rt_csrf cookie
    address: str  # the browser's address: the per-address cap
    sealed: str
    created_at: float
    expires_at: float


def _evict_oldest(c: sqlite3.Connection, where: str, args: tuple[object, ...], keep: int) -> int:
    """Delete the oldest rows matching ``where`` so that ``keep`` remain."""
    (count,) = c.execute(f"SELECT count(*) FROM provider_logins WHERE {where}", args).fetchone()
    excess = int(count) - keep
    if excess <= 0:
        return 0
    return c.execute(
        "DELETE FROM provider_logins WHERE state_hash IN (SELECT state_hash FROM provider_logins"
        f" WHERE {where} ORDER BY created_at, state_hash LIMIT ?)", (*args, excess),
    ).rowcount


def add_provider_login(db: Database, row: PendingRow, *, now: float, per_address: int, total: int) -> int:
    """Store ``row``, making room first; returns how many live rows were evicted.

    Expired rows go; then the address keeps at most ``per_address - 1``
    others (its oldest go first) and the table ``total - 1``, so after the
    insert neither bound is exceeded.
    """

    def run(c: sqlite3.Connection) -> int:
        c.execute("DELETE FROM provider_logins WHERE expires_at <= ?", (now,))
        evicted = _evict_oldest(c, "address = ?", (row.address,), per_address - 1)
        evicted += _evict_oldest(c, "1 = 1", (), total - 1)
        c.execute(f"INSERT INTO provider_logins({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", attrs.astuple(row))
        return evicted

    # One add at a time: each counts the whole table, which two serializable
    # adds would conflict on (PostgreSQL: under an advisory lock instead).
    return db.write(run, lock="provider_logins.add")


def take_provider_login(db: Database, state_hash: str, now: float) -> PendingRow | None:
    """The live login of ``state_hash``, deleted in the same transaction;
    None when unknown, taken already or expired (an expired row goes too)."""

    def run(c: sqlite3.Connection) -> PendingRow | None:
        found = c.execute(f"SELECT {_COLUMNS} FROM provider_logins WHERE state_hash = ?", (state_hash,)).fetchone()
        if found is None:
            return None
        if c.execute("DELETE FROM provider_logins WHERE state_hash = ?", (state_hash,)).rowcount != 1:
            return None
        row = PendingRow(*found)
        return row if row.expires_at > now else None

    return db.write(run)


def provider_logins_count(db: Database) -> int:
    """Rows in the table, live or not yet swept."""
    return int(db.read("SELECT count(*) FROM provider_logins")[0][0])


def sweep(c: sqlite3.Connection, now: float) -> dict[str, int]:
    return {"provider_logins": c.execute("DELETE FROM provider_logins WHERE expires_at <= ?", (now,)).rowcount}
