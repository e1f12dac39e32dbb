"""The join/leave debounce: a sub that leaves a
``join_leave`` channel and comes back within ``[websocket]
join_leave_debounce`` costs the listeners nothing; a leave that stands is
sent when the window ends.  The hub's clock is injected."""

from __future__ import annotations

from realtime.config.settings import WebSocketSettings
from realtime.hub import Hub
from tests.helpers.hub import RULES, FakeConn


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def debounced_hub(window: float = 1.0) -> tuple[Hub, Clock]:
    clock = Clock()
    return Hub(RULES, WebSocketSettings(join_leave_debounce=window), clock=clock), clock


def events(conn: FakeConn) -> list[tuple[str, str]]:
    return [(m["type"], m["sub"]) for m in conn.take() if m["type"] in ("join", "leave")]


def test_subscribe_unsubscribe_churn_sends_one_join_and_at_most_one_leave() -> None:
    hub, clock = debounced_hub()
    listener, churner = FakeConn("bob"), FakeConn("mallory")
    hub.subscribe(listener, "room:1")
    for _ in range(500):
        hub.subscribe(churner, "room:1")
        hub.unsubscribe(churner, "room:1")
        clock.now += 0.001
    assert events(listener) == [("join", "mallory")]
    clock.now += 1.0
    assert hub.tick() == 1
    assert events(listener) == [("leave", "mallory")]
    assert hub.tick() == 0


def test_a_leave_is_held_for_the_window_then_sent() -> None:
    hub, clock = debounced_hub(window=2.0)
    listener, alice = FakeConn("bob"), FakeConn("alice")
    hub.subscribe(listener, "room:1")
    hub.subscribe(alice, "room:1")
    assert events(listener) == [("join", "alice")]
    hub.drop(alice)
    clock.now += 1.9
    hub.tick()
    assert events(listener) == []
    clock.now += 0.1
    hub.tick()
    assert events(listener) == [("leave", "alice")]


def test_a_rejoin_after_the_window_gets_the_leave_then_the_join() -> None:
    hub, clock = debounced_hub()
    listener, alice = FakeConn("bob"), FakeConn("alice")
    hub.subscribe(listener, "room:1")
    hub.subscribe(alice, "room:1")
    hub.unsubscribe(alice, "room:1")
    clock.now += 1.5  # no tick in between: subscribe itself sends what is due
    hub.subscribe(alice, "room:1")
    assert events(listener) == [("join", "alice"), ("leave", "alice"), ("join", "alice")]


def test_presence_leaves_out_a_member_whose_leave_is_held() -> None:
    # Presence is a snapshot of who is subscribed (SPEC §5a): alice has no
    # connection left, so she is not listed, though her leave is still held.
    hub, clock = debounced_hub()
    listener, alice = FakeConn("bob"), FakeConn("alice")
    hub.subscribe(listener, "room:1")
    hub.subscribe(alice, "room:1")
    hub.unsubscribe(alice, "room:1")
    assert hub.presence("room:1", sub="bob", scopes=listener.scopes) == [("bob", 1)]
    assert hub.presence_page("room:1", sub="bob", scopes=listener.scopes) == ([("bob", 1)], False)
    assert len(hub.held) == 1
    assert events(listener) == [("join", "alice")]
    # The leave still goes out when the window ends.
    clock.now += 1.0
    assert hub.presence("room:1", sub="bob", scopes=listener.scopes) == [("bob", 1)]
    assert events(listener) == [("leave", "alice")]


def test_a_rejoin_inside_the_window_is_listed_again_and_sends_nothing() -> None:
    hub, clock = debounced_hub()
    listener, alice = FakeConn("bob"), FakeConn("alice")
    hub.subscribe(listener, "room:1")
    hub.subscribe(alice, "room:1")
    assert events(listener) == [("join", "alice")]
    hub.unsubscribe(alice, "room:1")
    assert hub.presence("room:1", sub="bob", scopes=listener.scopes) == [("bob", 1)]
    clock.now += 0.5
    hub.subscribe(alice, "room:1")
    assert hub.presence("room:1", sub="bob", scopes=listener.scopes) == [("bob", 1), ("alice", 1)]
    clock.now += 5.0
    assert hub.tick() == 0
    assert events(listener) == []


def test_the_default_window_is_half_a_second() -> None:
    assert WebSocketSettings().join_leave_debounce == 0.5


def test_a_held_leave_is_forgotten_when_the_channel_empties() -> None:
    hub, clock = debounced_hub()
    listener, alice = FakeConn("bob"), FakeConn("alice")
    hub.subscribe(listener, "room:1")
    hub.subscribe(alice, "room:1")
    hub.drop(alice)
    hub.drop(listener)
    assert len(hub.held) == 0
    newcomer = FakeConn("carol")
    hub.subscribe(newcomer, "room:1")
    clock.now += 5
    hub.tick()
    assert events(newcomer) == []  # never told of a leave it had no join for


def test_a_zero_window_sends_leaves_at_once() -> None:
    hub, _ = debounced_hub(window=0.0)
    listener, alice = FakeConn("bob"), FakeConn("alice")
    hub.subscribe(listener, "room:1")
    hub.subscribe(alice, "room:1")
    hub.unsubscribe(alice, "room:1")
    assert events(listener) == [("join", "alice"), ("leave", "alice")]


def test_a_member_that_stayed_longer_than_the_window_leaves_at_once() -> None:
    # Only a leave soon after a join looks like churn; SPEC §5a's leave is
    # otherwise not delayed.
    hub, clock = debounced_hub()
    listener, alice = FakeConn("bob"), FakeConn("alice")
    hub.subscribe(listener, "room:1")
    hub.subscribe(alice, "room:1")
    clock.now += 1.0
    hub.unsubscribe(alice, "room:1")
    assert events(listener) == [("join", "alice"), ("leave", "alice")]
    assert len(hub.held) == 0
