"""The store on PostgreSQL: the same table functions over a connection pool.

:class:`PgStore` is :class:`realtime.store.store.Store` with a
:class:`~realtime.store.postgres.database.PgDatabase` under it: every
operation (``redeem_code``, ``rotate_refresh``, ``redeem_device_code``...)
is the same table function, whose SQL is written to read the same on
SQLite and PostgreSQL, so there is one implementation of each guarantee
and the store tests run on both (``tests/store``).
"""

from __future__ import annotations

from realtime.store.postgres.database import OPEN_TIMEOUT, POOL_SIZE, PgDatabase
from realtime.store.store import Store

__all__ = ["PgStore"]


class PgStore(Store):
    """The shared store: any node on the same database sees the same rows."""

    db: PgDatabase  # type: ignore[assignment]

    def __init__(self, db: PgDatabase) -> None:  # type: ignore[override]
        self.db = db  # type: ignore[assignment]

    @classmethod
    def open(cls, url: str, *, pool_size: int = POOL_SIZE,  # type: ignore[override]
             timeout: float = OPEN_TIMEOUT) -> PgStore:
        """Connect to the migrated database at ``url``; see :meth:`PgDatabase.open`."""
        return cls(PgDatabase.open(url, pool_size=pool_size, timeout=timeout))

    def sweep(self, now: float) -> dict[str, int]:
        """The tables' sweep, and the commit markers past their keep (not
        counted: they are the database layer's, not a table of the store)."""
        counts = super().sweep(now)
        self.db.sweep_markers()
        return counts

    @property
    def url(self) -> str:
        """The database URL without its password."""
        return self.db.url

    @property
    def pool_size(self) -> int:
        return self.db.pool_size
