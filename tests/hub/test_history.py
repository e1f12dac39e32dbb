"""Recovery: ``seq``, kept history and ``since`` (see "Recovery" in
:mod:`realtime.hub`)."""

from __future__ import annotations

from realtime.config.settings import WebSocketSettings
from realtime.hub import Hub
from realtime.hub.inprocess import InProcessBroker
from tests.helpers.hub import RULES, FakeConn, make_hub, msg, publish_n, replay_into, seqs


# -- history and since ------------------------------------------------------------


def test_since_replays_what_was_missed() -> None:
    hub = make_hub()  # chat:* keeps 5
    publish_n(hub, "chat:x", 4)
    conn = FakeConn()
    r = hub.subscribe(conn, "chat:x", since=1)
    assert (r.recovered, r.seq) == (True, 4)
    replay_into(conn, r)
    publish_n(hub, "chat:x", 1)
    assert seqs(conn) == [2, 3, 4, 5]


def test_since_zero_on_a_fresh_channel() -> None:
    hub = make_hub()
    r = hub.subscribe(FakeConn(), "chat:new", since=0)
    assert (r.replay, r.recovered, r.seq) == ([], True, 0)


def test_since_at_the_head_replays_nothing() -> None:
    hub = make_hub()
    publish_n(hub, "chat:x", 3)
    r = hub.subscribe(FakeConn(), "chat:x", since=3)
    assert (r.replay, r.recovered, r.seq) == ([], True, 3)


def test_since_older_than_history_is_a_gap() -> None:
    hub = make_hub()
    publish_n(hub, "chat:x", 12)  # keeps 8..12
    for since, recovered, first in [(7, True, 8), (6, False, 8), (0, False, 8), (10, True, 11)]:
        conn = FakeConn()
        r = hub.subscribe(conn, "chat:x", since=since)
        replay_into(conn, r)
        assert r.recovered is recovered, since
        assert seqs(conn) == list(range(first, 13))


def test_since_above_the_head_is_not_recovered() -> None:
    # The client's position comes from an earlier numbering (a restart).
    hub = make_hub()
    publish_n(hub, "chat:x", 2)
    r = hub.subscribe(FakeConn(), "chat:x", since=50)
    assert (r.replay, r.recovered, r.seq) == ([], False, 2)
    r = hub.subscribe(FakeConn(), "chat:fresh", since=50)
    assert (r.replay, r.recovered, r.seq) == ([], False, 0)


def test_no_history_channel() -> None:
    hub = make_hub()
    s = frozenset()
    for i in range(3):
        hub.publish("open:x", i, from_sub="p", scopes=s)
    r = hub.subscribe(FakeConn(), "open:x", since=1)
    assert (r.replay, r.recovered, r.seq) == ([], False, 3)
    r = hub.subscribe(FakeConn(), "open:x", since=3)
    assert (r.replay, r.recovered) == ([], True)


def test_reconnect_with_since_continues_exactly() -> None:
    hub = make_hub()
    first = FakeConn()
    hub.subscribe(first, "chat:x")
    publish_n(hub, "chat:x", 3)
    last_seen = seqs(first)[-1]
    hub.drop(first)
    publish_n(hub, "chat:x", 2)  # published while away
    second = FakeConn()
    r = hub.subscribe(second, "chat:x", since=last_seen)
    assert r.recovered
    replay_into(second, r)
    publish_n(hub, "chat:x", 1)
    assert seqs(second) == [4, 5, 6]


def test_forgotten_idle_channel_restarts_and_says_so() -> None:
    hub = Hub(RULES, WebSocketSettings(), InProcessBroker(max_idle_channels=2))
    publish_n(hub, "chat:a", 3)
    publish_n(hub, "chat:b", 1)
    publish_n(hub, "chat:c", 1)  # pushes chat:a out
    r = hub.subscribe(FakeConn(), "chat:a", since=3)
    assert (r.recovered, r.seq) == (False, 0)
    assert hub.publish("chat:a", 0, from_sub="p", scopes=frozenset({"chat:write"})).seq == 1


def test_subscribed_channels_are_never_forgotten() -> None:
    broker = InProcessBroker(max_idle_channels=0)
    hub = Hub(RULES, WebSocketSettings(), broker)
    conn = FakeConn()
    hub.subscribe(conn, "chat:a")
    publish_n(hub, "chat:a", 3)
    for i in range(5):
        publish_n(hub, f"chat:other{i}", 1)
    assert hub.publish("chat:a", 0, from_sub="p", scopes=frozenset({"chat:write"})).seq == 4
    assert broker.channel_count() == 1


def test_replay_frames_are_messages() -> None:
    hub = make_hub()
    hub.publish("chat:x", {"k": "é"}, from_sub="bob", scopes=frozenset({"chat:write"}))
    conn = FakeConn()
    replay_into(conn, hub.subscribe(conn, "chat:x", since=0))
    assert conn.take() == [msg("chat:x", 1, {"k": "é"}, "bob")]
