"""The timers both transports share (realtime/session/timers.py)."""

from __future__ import annotations

import math

from realtime.session.timers import Due, Timers


def test_warning_once_per_deadline_and_re_aimed_by_a_refresh() -> None:
    timers = Timers()
    timers.start(now=0.0, deadline=60.0, expiry_warning=30.0, ping_interval=0)
    assert timers.next_wake() == 30.0 and timers.ping_at == math.inf
    assert timers.due(29.9, 0, None) == Due()
    assert timers.due(30.0, 0, None) == Due(warn=True)
    assert timers.due(31.0, 0, None) == Due() and timers.next_wake() == math.inf
    timers.aim_warning(deadline=120.0, expiry_warning=30.0)
    assert timers.next_wake() == 90.0


def test_pings_and_a_silent_peer() -> None:
    timers = Timers()
    timers.start(now=0.0, deadline=1000.0, expiry_warning=10.0, ping_interval=25.0)
    assert timers.due(25.0, 25.0, 10.0) == Due(ping=True)
    assert timers.ping_at == 50.0 and timers.pong_due == 35.0 and timers.next_wake() == 35.0
    timers.heard()
    assert timers.next_wake() == 50.0
    assert timers.due(50.0, 25.0, 10.0) == Due(ping=True)
    assert timers.due(60.0, 25.0, 10.0) == Due(gone=True)


def test_without_pong_timeout_a_keep_alive_never_gives_up() -> None:
    timers = Timers()
    timers.start(now=0.0, deadline=1000.0, expiry_warning=10.0, ping_interval=5.0)
    for n in range(1, 5):
        assert timers.due(5.0 * n, 5.0, None) == Due(ping=True)
    assert timers.pong_due == math.inf
