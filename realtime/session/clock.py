"""The session's clock seam.

A session keeps four times: the token deadline, when to warn
(``token_expiring``), when to ping, and by when the peer must have
answered.  All of them are instants on one monotonic *timer clock* (trio's
in the shell, so ``autojump_clock`` moves them in tests).  The token's
``exp`` is an epoch time, on the *wall clock*; :meth:`Clock.deadline`
converts it once, when the session starts and when a refresh moves it.

Why a seam rather than ``trio.current_time()`` and ``time.time()`` called
where needed: mixing the real wall clock into trio time made every timer
test wait in real time.  With both clocks injected, a test supplies a wall
clock that follows trio's mock clock and nothing waits.  The publish rate
limit reads the same timer clock (see :mod:`realtime.session.ratelimit`).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock"]


class Clock(Protocol):
    """Where a session reads the time.  No I/O, no trio here: the trio
    shell (:class:`realtime.net.trio_clock.TrioClock`) implements it."""

    def now(self) -> float:
        """Seconds on the monotonic timer clock the session's deadlines use."""
        ...

    def deadline(self, exp: float) -> float:
        """The timer-clock instant of the epoch time ``exp`` (a token's
        ``exp``): ``now() + (exp - wall-clock now)``."""
        ...
