"""Token buckets, without a clock of their own.

Used for the per-connection publish limit (``[websocket] publish_rate``,
close 4008) and for login attempts (``[oauth] login_rate``).  The caller
passes ``now`` (``trio.current_time()`` in the shell, a plain number in
tests), so the bucket is sans-I/O and tests need no sleeping.

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; each
allowed event spends one.  It starts full, so a new connection may burst.
"""

from __future__ import annotations

import math
from realtime.config.units import parse_rate

__all__ = ["RateLimiter", "KeyedRateLimiter", "parse_rate"]

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

    def retry_after(self, now: float) -> float:
        """Seconds until :meth:`allow` would succeed (0 if it would now).

        For ``Retry-After`` on a 429.
        """
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def is_full(self, now: float) -> bool:
        """True when the bucket is back to ``burst``: it remembers nothing."""
        self._refill(now)
        return self._tokens >= self.burst


class KeyedRateLimiter:
    """One bucket per key (a user name, an address) in bounded memory.

    Args:
        rate, burst: as :class:`RateLimiter`.
        max_keys: buckets kept; beyond it full buckets are forgotten first,
            then the oldest.  A forgotten key starts with a full bucket, so
            the bound can only make the limiter more lenient, never lock a
            key out wrongly.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        RateLimiter(rate, burst)  # validate once, here
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, RateLimiter] = {}

    @classmethod
    def from_spec(cls, text: str, max_keys: int = 100_000) -> "KeyedRateLimiter":
        rate, burst = parse_rate(text)
        return cls(rate, burst, max_keys)

    def allow(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = RateLimiter(self.rate, self.burst)
        return bucket.allow(now)

    def retry_after(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.retry_after(now)

    def _prune(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.is_full(now)]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)
