"""A live session's timers, whatever its transport (SPEC §4, §13).

Both shells (:mod:`realtime.net.websocket`, :mod:`realtime.net.sse`) keep
one :class:`Timers` and wait on :meth:`Timers.next_wake` as the receive
deadline of their one reading task (a task per timer would cost every
idle socket memory).  When it passes they ask :meth:`Timers.due` what to
do: warn ``token_expiring`` at ``exp - expiry_warning`` (once per
deadline; a refresh re-aims it), send a keep-alive, or give up on a peer
that said nothing for ``pong_timeout`` after a ping.  The deadline itself
is the shell's cancel scope; this module never sees a socket or a clock,
only instants on the session's timer clock (:mod:`realtime.session.clock`).
"""

from __future__ import annotations

import math

import attrs

__all__ = ["Due", "Timers"]


@attrs.frozen
class Due:
    """What is due now: drop a silent peer, warn, and/or send a keep-alive."""

    gone: bool = False
    warn: bool = False
    ping: bool = False


NOTHING = Due()


class Timers:
    """Warning, keep-alive and liveness instants of one session.

    The intervals are passed in on each call, read from the current
    settings, so a reload applies to live sessions from their next timer.
    """

    __slots__ = ("warn_at", "ping_at", "pong_due")

    def __init__(self) -> None:
        self.warn_at = math.inf  # when to send token_expiring
        self.ping_at = math.inf  # when to send the next keep-alive
        self.pong_due = math.inf  # by when the peer must have spoken

    def start(self, now: float, deadline: float, expiry_warning: float, ping_interval: float) -> None:
        """The session begins: aim the warning and the first keep-alive
        (none when ``ping_interval`` is 0)."""
        self.aim_warning(deadline, expiry_warning)
        if ping_interval > 0:
            self.ping_at = now + ping_interval

    def aim_warning(self, deadline: float, expiry_warning: float) -> None:
        """A new deadline (start or refresh): warn ``expiry_warning`` before it."""
        self.warn_at = deadline - expiry_warning

    def heard(self) -> None:
        """The peer sent or took bytes: it is alive."""
        self.pong_due = math.inf

    def next_wake(self) -> float:
        return min(self.warn_at, self.ping_at, self.pong_due)

    def due(self, now: float, ping_interval: float, pong_timeout: float | None) -> Due:
        """What to do at ``now``; the timers move on as if it was done.

        ``pong_timeout``: how long a peer may stay silent after a ping;
        ``None`` when the transport has no answer to wait for (SSE).
        """
        if now >= self.pong_due:
            return Due(gone=True)
        warn = now >= self.warn_at
        if warn:
            self.warn_at = math.inf  # once per deadline; a refresh re-aims it
        ping = now >= self.ping_at
        if ping:
            self.ping_at = now + ping_interval
            if pong_timeout is not None and self.pong_due == math.inf:
                self.pong_due = now + pong_timeout
        return Due(warn=warn, ping=ping) if warn or ping else NOTHING
