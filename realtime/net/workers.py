"""Worker threads for blocking work the cores hand over through an
:class:`realtime.oauth.offload.Offload` (argon2, the users file).

Each offload has its own ``trio.CapacityLimiter``: a burst of logins
cannot spawn unbounded threads or starve the WebSocket fan-out of its
core (DESIGN.md §6), and a limiter of one makes a single writer.

The argon2 offloads also bound how many calls may *wait* for a thread
(``[oauth] hash_queue``): past that, :class:`OffloadBusy` at once, which
the endpoints answer with 503 and ``Retry-After``.  User logins and
client authentication have a limiter each, so a flood of bogus client
credentials cannot make a password login wait.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import trio

from realtime.oauth.offload import Offload, OffloadBusy

T = TypeVar("T")

#: argon2 checks of user passwords running at once (each ~64 MiB, tens of ms).
ARGON2_THREADS = 2
#: argon2 checks of client secrets running at once: successes are cached
#: for a minute, so a real client rarely needs one.
CLIENT_ARGON2_THREADS = 1
#: ``Retry-After`` (seconds) when a wait queue is full: a queue drains in
#: well under that on any machine argon2's defaults suit.
BUSY_RETRY_AFTER = 2.0


def thread_offload(limiter: trio.CapacityLimiter, max_waiting: int | None = None) -> Offload:
    """An offload running each call in a trio worker thread under ``limiter``.

    With ``max_waiting``, a call that would find that many calls already
    waiting for a thread raises :class:`OffloadBusy` instead of queueing.
    """
    in_flight = 0

    async def offload(fn: Callable[[], T]) -> T:
        nonlocal in_flight
        if max_waiting is not None and in_flight >= limiter.total_tokens + max_waiting:
            raise OffloadBusy(BUSY_RETRY_AFTER)
        in_flight += 1
        try:
            return await trio.to_thread.run_sync(fn, limiter=limiter)
        finally:
            in_flight -= 1

    return offload
