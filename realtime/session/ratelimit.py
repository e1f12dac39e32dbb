"""Token buckets, without a clock of their own.

Used for the per-connection limits on publishes (``[websocket]
publish_rate``) and on every client message (``message_rate``), both
close 4008.  The caller passes ``now`` from the session's injected clock
(``trio.current_time()`` in the shell, a plain number in tests), so the
bucket is sans-I/O and tests need no sleeping.  (Login throttling keeps
its own keyed buckets in :mod:`realtime.oauth.throttle`.)

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; each
allowed event spends one.  It starts full, so a new connection may burst.
"""

from __future__ import annotations

import math

from realtime.config.units import parse_rate

__all__ = ["RateLimiter", "parse_rate"]


class RateLimiter:
    """One token bucket.

    Args:
        rate: tokens gained per second (> 0).
        burst: bucket size (>= 1).
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: int) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError("rate must be a positive number")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    @classmethod
    def from_spec(cls, text: str) -> "RateLimiter":
        """A bucket from a config string such as ``"50/s"``."""
        rate, burst = parse_rate(text)
        return cls(rate, burst)

    @classmethod
    def for_messages(cls, text: str, max_subscriptions: int) -> "RateLimiter":
        """The bucket every client message passes (``[websocket]
        message_rate``), with a burst of at least ``2 * max_subscriptions``.

        A client that reconnects resubscribes to each of its channels, one
        message apiece, in one go.  Were the burst only ``max_subscriptions``
        (the defaults: 100 and ``"100/s"``), a full resubscription would
        leave no room for the next message: the client is closed 4008,
        reconnects and does it again, forever.  Twice the limit leaves as
        much again for the messages that follow; the refill rate, which
        bounds a sustained flood, stays that of ``message_rate``.
        """
        rate, burst = parse_rate(text)
        return cls(rate, max(burst, 2 * max_subscriptions, 1))

    def _refill(self, now: float) -> None:
        last = self._last
        if last is None:
            self._last = now
        elif now > last:
            self._tokens = min(float(self.burst), self._tokens + (now - last) * self.rate)
            self._last = now
        # A clock that did not move (or moved back) grants nothing.

    def allow(self, now: float) -> bool:
        """Spend a token if one is there.  ``now`` is monotonic seconds."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

