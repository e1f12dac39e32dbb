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
    """The store for trio code: every call runs in the one store thread.

    ``CapacityLimiter(1)`` serialises the calls, so one connection is the
    single writer; SQLite's own lock is never contended inside a process.
    The limiter also orders :meth:`close` after any call in flight.
    """

    def __init__(self, store: Store) -> None:
        self.sync = store
        self.limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str | Path) -> AsyncStore:
        """Open (creating if needed) the store at ``path`` in a worker thread."""
        return cls(await trio.to_thread.run_sync(Store.open, path))

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)`` in a worker thread, one call at a time.

        Blocks the calling task, not the event loop; the call's exception,
        if any, is raised here.
        """
        return await trio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), limiter=self.limiter
        )
