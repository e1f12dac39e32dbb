"""The trio edge of the store: every call in the one store thread.

The only store module that imports trio (DESIGN.md §2).
:class:`AsyncStore` gives :class:`~realtime.store.calls.StoreCalls` its
one generic :meth:`AsyncStore.call`, which moves a blocking store call to
a worker thread behind ``CapacityLimiter(1)``; every operation declared
there runs through it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, ParamSpec, TypeVar

import trio

from realtime.store.calls import StoreCalls
from realtime.store.store import Store

__all__ = ["AsyncStore"]

P = ParamSpec("P")
R = TypeVar("R")


class AsyncStore(StoreCalls):
    """The store for trio code: every call runs in a store thread.

    SQLite: ``CapacityLimiter(1)`` serialises the calls, so one connection
    is the single writer; SQLite's own lock is never contended inside a
    process.  PostgreSQL (:meth:`open_url`): as many threads as the pool
    has connections, each call on a connection of its own (the database
    keeps the guarantees, :mod:`realtime.store.postgres.database`).
    The limiter also orders :meth:`close` after every call in flight.
    """

    def __init__(self, store: Store, *, limit: int = 1) -> None:
        self.sync = store
        self.limiter = trio.CapacityLimiter(limit)

    @classmethod
    async def open(cls, path: str | Path) -> AsyncStore:
        """Open (creating if needed) the store at ``path`` in a worker thread."""
        return cls(await trio.to_thread.run_sync(Store.open, path))

    @classmethod
    async def open_url(cls, url: str, *, pool_size: int | None = None) -> AsyncStore:
        """Connect to the migrated PostgreSQL database at ``url`` (SPEC §14) in a
        worker thread; calls then run ``pool_size`` at a time.

        Raises:
            StoreUnavailable, SchemaMismatch: OSErrors, "cannot start".
        """
        # Imported here: only a [store] url needs psycopg.
        from realtime.store.postgres import POOL_SIZE, PgStore

        opening = functools.partial(PgStore.open, url, pool_size=pool_size or POOL_SIZE)
        store = await trio.to_thread.run_sync(opening)
        return cls(store, limit=store.pool_size)

    async def close(self) -> None:
        """Close once every call in flight has finished (all the limiter's tokens held)."""
        borrowers = [object() for _ in range(int(self.limiter.total_tokens))]
        try:
            for borrower in borrowers:
                await self.limiter.acquire_on_behalf_of(borrower)
            await trio.to_thread.run_sync(self.sync.close)
        finally:
            for borrower in borrowers:
                if borrower in self.limiter.statistics().borrowers:
                    self.limiter.release_on_behalf_of(borrower)

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` in a worker thread, one call at a time.

        Blocks the calling task, not the event loop; the call's exception,
        if any, is raised here.
        """
        return await trio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), limiter=self.limiter
        )
