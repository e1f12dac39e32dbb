"""Login brute-force throttling: token buckets per user and per address.

Only *failed* attempts spend tokens, so a user who types the password
right is never slowed down; ``[oauth] login_rate`` (``10/m``) is both the
burst and the refill.  A request is refused before the password is even
checked while either its user's or its address's bucket is empty, with
the time until one token is back (for ``Retry-After``).

RFC 6749 §10.10: "the authorization server MUST protect ... against
brute force attacks"; RFC 9700 §4.x recommends rate limiting of
credential guessing.
"""

from __future__ import annotations

import attrs


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


class KeyedBuckets:
    """Token buckets by key, with a bound on how many keys are remembered."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def _refill(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= self.burst:
            del self._buckets[key]  # full again: nothing to remember
            return None
        return bucket

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        bucket = self._refill(key, now)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def spend(self, key: str, now: float) -> None:
        bucket = self._refill(key, now)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = max(0.0, bucket.tokens - 1)

    def _evict(self, now: float) -> None:
        for key in list(self._buckets):
            self._refill(key, now)
        if len(self._buckets) >= self.max_keys:
            # Still full of active attackers: forget the oldest half.
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1].stamp)[len(self._buckets) // 2:]
            self._buckets = dict(keep)


class LoginThrottle:
    """Failed-login limits per user name and per client address."""

    def __init__(self, rate: float, burst: int) -> None:
        self.users = KeyedBuckets(rate, burst)
        self.addresses = KeyedBuckets(rate, burst)

    def retry_after(self, user: str, address: str, now: float) -> float:
        return max(self.users.retry_after(user.casefold(), now), self.addresses.retry_after(address, now))

    def failed(self, user: str, address: str, now: float) -> None:
        self.users.spend(user.casefold(), now)
        self.addresses.spend(address, now)
