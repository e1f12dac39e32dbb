"""The seam through which the OAuth cores run blocking work (argon2, the
users file) off the event loop without importing trio.

The net layer builds each :class:`Offload` around a worker-thread call
with its own capacity limiter (:mod:`realtime.net.workers`), so the
limits live where the threads are made and the cores stay sans-I/O.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Protocol, TypeVar

T = TypeVar("T")


class Offload(Protocol):
    """``await offload(fn)``: ``fn()`` run in a worker thread; its result."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


class OffloadBusy(Exception):
    """The offload's wait queue is full: the work was not started.

    Raised instead of queueing without bound, so a flood of
    argon2 checks answers 503 with ``Retry-After`` rather than making every
    later check wait behind it.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__("busy, retry later")
        self.retry_after = retry_after
