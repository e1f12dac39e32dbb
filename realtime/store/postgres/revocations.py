"""The revocations written since a cursor (PostgreSQL only: the
``revoked_at`` column of schema version 4), for another node's
revocation watcher (:mod:`realtime.net.revocation_watch`).

``revoked_at`` is the writing transaction's start (``now()``), so a
transaction that committed after a read may carry an earlier time than
that read: each read starts :data:`OVERLAP` seconds before the previous
one's database time, far more than a store write lasts (its connection
wait is a few seconds).  Rows read again are known already and cost a
set lookup; what the read saves is every older revocation, re-read at
every poll before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realtime.store.postgres.database import PgDatabase

__all__ = ["OVERLAP", "revocations_since"]

OVERLAP = timedelta(seconds=60)


def revocations_since(db: PgDatabase, since: datetime | None, now: float) -> tuple[list[tuple[str, float]], datetime]:
    """The revoked jtis of unexpired tokens written at or after ``since``
    (None: all of them), and the cursor for the next read."""
    row = db.read_one(
        "SELECT now(), coalesce(array_agg(jti), '{}'), coalesce(array_agg(exp), '{}') FROM revoked"
        " WHERE exp > ? AND revoked_at >= coalesce(?::timestamptz, '-infinity')",
        (now, since),
    )
    assert row is not None  # an aggregate always answers one row
    at, jtis, exps = row
    return [(str(j), float(e)) for j, e in zip(jtis, exps)], at - OVERLAP
