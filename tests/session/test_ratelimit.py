"""Token buckets driven by a clock we pass in: no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.session.ratelimit import RateLimiter, parse_rate


def test_burst_then_refill() -> None:
    rl = RateLimiter(rate=8, burst=5)
    assert [rl.allow(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert not rl.allow(100.0625)  # half a token
    assert rl.allow(100.125)
    assert not rl.allow(100.125)
    # A long quiet spell refills only up to the burst.
    assert sum(rl.allow(1000.0) for _ in range(20)) == 5


def test_clock_going_back_grants_nothing() -> None:
    rl = RateLimiter(rate=1, burst=1)
    assert rl.allow(50.0)
    assert not rl.allow(10.0)
    assert not rl.allow(50.5)
    assert rl.allow(51.0)


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (float("inf"), 1), (float("nan"), 1), (1, 0)])
def test_invalid(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


@pytest.mark.parametrize(
    "text,expected",
    [("50/s", (50.0, 50)), ("10/m", (10 / 60, 10)), ("3/h", (3 / 3600, 3)), ("1/d", (1 / 86400, 1)),
     ("5/10s", (0.5, 5)), (" 2 / s ", (2.0, 2))],
)
def test_parse_rate(text: str, expected: tuple[float, int]) -> None:
    rate, burst = parse_rate(text)
    assert rate == pytest.approx(expected[0]) and burst == expected[1]


@pytest.mark.parametrize("text", ["", "50", "/s", "0/s", "5/0s", "5/x", "-1/s", "1.5/s", "5/s/s"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_from_spec() -> None:
    rl = RateLimiter.from_spec("2/s")
    assert [rl.allow(0.0) for _ in range(3)] == [True, True, False]


@given(
    rate=st.floats(0.1, 1000),
    burst=st.integers(1, 100),
    gaps=st.lists(st.floats(0, 5), max_size=200),
)
def test_never_more_than_burst_plus_rate_times_time(rate: float, burst: int, gaps: list[float]) -> None:
    rl = RateLimiter(rate, burst)
    now = 0.0
    allowed = 0
    for gap in gaps:
        now += gap
        allowed += rl.allow(now)
    assert allowed <= burst + rate * now + 1e-6



def test_the_message_bucket_bursts_twice_max_subscriptions() -> None:
    # The defaults, "100/s" and 100 subscriptions: a burst of 100 would be
    # spent entirely by a reconnecting client's resubscriptions.
    rl = RateLimiter.for_messages("100/s", 100)
    assert (rl.rate, rl.burst) == (100.0, 200)
    # A larger configured count stays as it is.
    assert RateLimiter.for_messages("500/s", 100).burst == 500
    assert RateLimiter.for_messages("5/s", 0).burst == 5
