"""The sessions' :class:`~realtime.session.clock.Clock` in the trio shell.

A module of its own because both trio shells keep time on it: the
WebSocket :class:`~realtime.net.websocket.Session` and the SSE session
(:mod:`realtime.net.sse`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import trio


@attrs.frozen
class TrioClock:
    """The session's :class:`~realtime.session.clock.Clock` in the trio shell.

    ``now`` is trio's clock (a ``MockClock`` under ``autojump_clock``);
    ``wall`` is the epoch clock token ``exp`` values are on.  A test passes
    a ``wall`` that follows trio's clock, so nothing waits in real time.
    """

    wall: Callable[[], float] = time.time

    def now(self) -> float:
        return trio.current_time()

    def deadline(self, exp: float) -> float:
        return trio.current_time() + (exp - self.wall())


TRIO_CLOCK = TrioClock()
