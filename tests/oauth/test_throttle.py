"""The brute-force buckets, without a server: reserve before the check,
refund on success, and which buckets a try is charged to."""

from __future__ import annotations

from realtime.oauth.throttle import ClientAuthThrottle, KeyedBuckets, LoginThrottle


def test_reserve_spends_at_most_the_burst_until_refill() -> None:
    throttle = LoginThrottle(rate=3 / 60, burst=3, user_rate=30 / 60, user_burst=30)
    tries = [throttle.reserve("alice", "192.0.2.1", 100.0) for _ in range(12)]
    assert tries[:3] == [0.0, 0.0, 0.0]  # three may be checked at once...
    assert all(wait > 0 for wait in tries[3:])  # ...the rest wait, and spend nothing
    assert tries[3] == 20.0  # one token back at 3/m
    assert throttle.reserve("alice", "192.0.2.1", 119.0) > 0
    assert throttle.reserve("alice", "192.0.2.1", 120.0) == 0.0


def test_refund_gives_the_try_back() -> None:
    throttle = LoginThrottle(rate=3 / 60, burst=3)
    for _ in range(3):
        assert throttle.reserve("alice", "192.0.2.1", 0.0) == 0.0
        throttle.refund("alice", "192.0.2.1", 0.0)  # right password: costs nothing
    assert throttle.reserve("alice", "192.0.2.1", 0.0) == 0.0


def test_one_address_does_not_lock_the_user_out_elsewhere() -> None:
    throttle = LoginThrottle(rate=3 / 60, burst=3, user_rate=6 / 60, user_burst=6)
    for _ in range(3):
        throttle.reserve("Alice", "192.0.2.1", 0.0)
    assert throttle.reserve("alice", "192.0.2.1", 0.0) > 0  # names compare casefolded
    assert throttle.reserve("alice", "192.0.2.2", 0.0) == 0.0
    # The per-user bucket still caps guesses spread over addresses.
    for n in range(3, 5):
        throttle.reserve("alice", f"192.0.2.{n}", 0.0)
    assert throttle.reserve("alice", "192.0.2.99", 0.0) > 0


def test_give_back_never_exceeds_the_burst() -> None:
    buckets = KeyedBuckets(rate=1.0, burst=2)
    buckets.give_back("k", 0.0)  # nothing spent: nothing to give back
    buckets.spend("k", 0.0)
    buckets.give_back("k", 0.0)
    buckets.give_back("k", 0.0)
    buckets.spend("k", 0.0)
    buckets.spend("k", 0.0)
    assert buckets.retry_after("k", 0.0) == 1.0  # two tokens, not three


def test_client_throttle_by_pair_address_and_client_id() -> None:
    throttle = ClientAuthThrottle(rate=2 / 60, burst=2)
    assert throttle.reserve("svc", "192.0.2.1", 0.0) == 0.0
    assert throttle.reserve("svc", "192.0.2.1", 0.0) == 0.0
    assert throttle.reserve("svc", "192.0.2.1", 0.0) > 0  # the pair's (and address's) bucket
    assert throttle.reserve("svc", "192.0.2.2", 0.0) == 0.0  # the client_id is not locked out
    assert throttle.reserve("other", "192.0.2.2", 0.0) == 0.0
    assert throttle.reserve("third", "192.0.2.2", 0.0) > 0  # the address's bucket


def test_client_id_bucket_is_ten_times_looser() -> None:
    throttle = ClientAuthThrottle(rate=2 / 60, burst=2)
    assert (throttle.clients.rate, throttle.clients.burst) == (20 / 60, 20)
    for n in range(10):  # 20 failures from ten addresses...
        for _ in range(2):
            assert throttle.reserve("svc", f"192.0.2.{n}", 0.0) == 0.0
    assert throttle.reserve("svc", "192.0.2.99", 0.0) > 0  # ...lock the client_id out everywhere
