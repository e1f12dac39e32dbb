"""Worker threads for blocking work the cores hand over through an
:class:`realtime.oauth.offload.Offload` (argon2, the users file).

Each offload has its own ``trio.CapacityLimiter``: a burst of logins
cannot spawn unbounded threads or starve the WebSocket fan-out of its
core (DESIGN.md §6), and a limiter of one makes a single writer.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import trio

from realtime.oauth.offload import Offload

T = TypeVar("T")

#: argon2 hashes and verifications running at once (each one ~64 MiB, tens of ms).
ARGON2_THREADS = 2


def thread_offload(limiter: trio.CapacityLimiter) -> Offload:
    """An offload running each call in a trio worker thread under ``limiter``."""

    async def offload(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=limiter)

    return offload
