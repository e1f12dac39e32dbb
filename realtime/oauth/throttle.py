"""Brute-force throttling: token buckets for failed logins and failed
client authentications.

A try *reserves* one token from each of its buckets before the argon2
check and gets it back when the check succeeds, so only failures cost
anything, and N guesses sent at once cannot all pass a check made before
any of them was charged: at most ``burst`` are in flight
per key.  A request is refused without any hashing while one of its
buckets is empty, with the time until a token is back (``Retry-After``).

Logins are charged per (user, address) at ``[oauth] login_rate``, per
address at the same rate, and per user at the looser ``login_user_rate``:
one attacker address locks out only itself, and locking a user out
everywhere takes several addresses (the per-user bucket is what stops a
guessing campaign spread over many addresses).  Client authentications
are charged the same way: per (``client_id``, address) and per address at
``[oauth] client_auth_rate``, per ``client_id`` at ten times that rate.

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

    def give_back(self, key: str, now: float) -> None:
        """Undo one :meth:`spend` (a bucket already full again is gone)."""
        bucket = self._refill(key, now)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + 1)
            if bucket.tokens >= self.burst:
                del self._buckets[key]

    def _evict(self, now: float) -> None:
        for key in list(self._buckets):
            self._refill(key, now)
        if len(self._buckets) >= self.max_keys:
            # Still full of active attackers: forget the oldest half.
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1].stamp)[len(self._buckets) // 2:]
            self._buckets = dict(keep)


Charge = tuple[KeyedBuckets, str]

#: How much looser the per-``client_id`` bucket is than ``client_auth_rate``.
CLIENT_FACTOR = 10


def reserve(charges: list[Charge], now: float) -> float:
    """Spend one token of every bucket if each has one and answer 0; else
    spend nothing and answer the seconds until all of them have one."""
    wait = max(buckets.retry_after(key, now) for buckets, key in charges)
    if wait > 0:
        return wait
    for buckets, key in charges:
        buckets.spend(key, now)
    return 0.0


def refund(charges: list[Charge], now: float) -> None:
    for buckets, key in charges:
        buckets.give_back(key, now)


class LoginThrottle:
    """Failed-login limits per (user, address), per address and per user."""

    def __init__(self, rate: float, burst: int, user_rate: float | None = None,
                 user_burst: int | None = None) -> None:
        self.pairs = KeyedBuckets(rate, burst)
        self.addresses = KeyedBuckets(rate, burst)
        self.users = KeyedBuckets(user_rate or rate, user_burst or burst)

    def _charges(self, user: str, address: str) -> list[Charge]:
        name = user.casefold()
        return [(self.pairs, f"{name}\0{address}"), (self.addresses, address), (self.users, name)]

    def reserve(self, user: str, address: str, now: float) -> float:
        """0 and one try spent, or the seconds to wait (nothing spent)."""
        return reserve(self._charges(user, address), now)

    def refund(self, user: str, address: str, now: float) -> None:
        """The try succeeded (or was never checked): give its tokens back."""
        refund(self._charges(user, address), now)


class ClientAuthThrottle:
    """Failed client authentications per (``client_id``, address), per
    address and per ``client_id``: each costs an argon2 check, so they are
    limited before the hash, like logins.

    A ``client_id`` is public, so its own bucket is looser (``client_rate``,
    by default 10 times ``rate``): a few wrong secrets from one address empty
    that address's buckets, not the client's, and the real client keeps
    authenticating from its own address."""

    def __init__(self, rate: float, burst: int, client_rate: float | None = None,
                 client_burst: int | None = None) -> None:
        self.pairs = KeyedBuckets(rate, burst)
        self.addresses = KeyedBuckets(rate, burst)
        self.clients = KeyedBuckets(client_rate or rate * CLIENT_FACTOR, client_burst or burst * CLIENT_FACTOR)

    def _charges(self, client_id: str, address: str) -> list[Charge]:
        return [(self.pairs, f"{client_id}\0{address}"), (self.addresses, address), (self.clients, client_id)]

    def reserve(self, client_id: str, address: str, now: float) -> float:
        return reserve(self._charges(client_id, address), now)

    def refund(self, client_id: str, address: str, now: float) -> None:
        refund(self._charges(client_id, address), now)
