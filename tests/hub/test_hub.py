"""The hub without sockets: rules, subscriptions, seq, history, fan-out, presence."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from realtime.hub.broker import InProcessBroker
from realtime.hub.index import ConnectionIndex
from realtime.hub import Hub, HubError, PublishResult
from realtime.config.settings import ChannelRule, WebSocketSettings
from tests.helpers.hub import RULES, FakeConn, make_hub


def replay_into(conn: FakeConn, result: Any) -> None:
    """What the session does with a SubscribeResult."""
    for frame in result.replay:
        conn.offer(frame)


def msg(channel: str, seq: int, data: Any, sub: str = "alice") -> dict[str, Any]:
    return {"type": "message", "channel": channel, "seq": seq, "from": sub, "data": data}


# -- subscribe and publish -----------------------------------------------------


def test_publish_reaches_subscribers_in_order() -> None:
    hub = make_hub()
    a, b, c = FakeConn(), FakeConn("bob"), FakeConn("carol")
    for conn in (a, b):
        r = hub.subscribe(conn, "chat:x")
        assert (r.replay, r.recovered, r.seq, r.new) == ([], True, 0, True)
    results = [hub.publish("chat:x", {"n": i}, from_sub="carol", scopes=c.scopes) for i in range(3)]
    assert [(r.seq, r.delivered) for r in results] == [(1, 2), (2, 2), (3, 2)]
    for conn in (a, b):
        assert conn.take() == [msg("chat:x", i + 1, {"n": i}, "carol") for i in range(3)]
    assert c.take() == []


def test_one_frame_object_serves_every_subscriber() -> None:
    hub = make_hub()
    conns = [FakeConn(f"u{i}") for i in range(50)]
    for conn in conns:
        hub.subscribe(conn, "chat:x")
    hub.publish("chat:x", "hi", from_sub="u0", scopes=frozenset({"chat:write"}))
    first = conns[0].frames[0]
    assert all(conn.frames == [first] and conn.frames[0] is first for conn in conns)


def test_publisher_receives_its_own_message_and_no_subscriber_means_zero() -> None:
    hub = make_hub()
    a = FakeConn()
    assert hub.publish("chat:x", 1, from_sub="alice", scopes=a.scopes) == PublishResult(0, 1)
    hub.subscribe(a, "chat:x")
    assert hub.publish("chat:x", 2, from_sub="alice", scopes=a.scopes) == PublishResult(1, 2)
    assert a.take() == [msg("chat:x", 2, 2)]


def test_seq_is_per_channel() -> None:
    hub = make_hub()
    s = frozenset({"chat:write"})
    assert [hub.publish("chat:a", 0, from_sub="x", scopes=s).seq for _ in range(3)] == [1, 2, 3]
    assert hub.publish("chat:b", 0, from_sub="x", scopes=s).seq == 1
    assert hub.publish("chat:a", 0, from_sub="x", scopes=s).seq == 4


# -- rules and scopes ------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    rules = (
        ChannelRule("chat:admin*", "admin", "admin"),
        ChannelRule("chat:*", "chat:read", "chat:write"),
    )
    hub = make_hub(rules)
    assert hub.rule_for("chat:admins") is rules[0]
    assert hub.rule_for("chat:lobby") is rules[1]
    assert hub.rule_for("Chat:lobby") is None  # case matters
    assert hub.rule_for("news") is None
    with pytest.raises(HubError) as info:
        hub.subscribe(FakeConn(scopes=("chat:read",)), "chat:admins")
    assert info.value.code == "forbidden"


def test_unknown_channel_and_missing_scope() -> None:
    hub = make_hub()
    conn = FakeConn(scopes=())
    for call in (
        lambda: hub.subscribe(conn, "nope"),
        lambda: hub.publish("nope", 1, from_sub="alice", scopes=conn.scopes),
    ):
        with pytest.raises(HubError) as info:
            call()
        assert info.value.code == "unknown_channel"
    with pytest.raises(HubError) as info:
        hub.subscribe(conn, "chat:x")
    assert info.value.code == "forbidden"
    with pytest.raises(HubError) as info:
        hub.publish("chat:x", 1, from_sub="alice", scopes=frozenset({"chat:read"}))
    assert info.value.code == "forbidden"
    # A None scope lets any token in.
    hub.subscribe(conn, "open:x")
    assert hub.publish("open:x", 1, from_sub="alice", scopes=frozenset()).delivered == 1
    assert hub.subscriptions_of(conn) == ("open:x",)


def test_user_channel_is_private() -> None:
    hub = make_hub()
    alice = FakeConn("alice", scopes=())
    bob = FakeConn("bob", scopes=("notify", "chat:read"))
    assert hub.subscribe(alice, "user:alice").new
    with pytest.raises(HubError) as info:
        hub.subscribe(bob, "user:alice")
    assert info.value.code == "forbidden"
    # Publishing needs the user:* rule's scope; the owner has no such right.
    with pytest.raises(HubError) as info:
        hub.publish("user:alice", "x", from_sub="alice", scopes=alice.scopes)
    assert info.value.code == "forbidden"
    assert hub.publish("user:alice", {"n": 1}, from_sub="bob", scopes=bob.scopes).delivered == 1
    assert alice.take() == [msg("user:alice", 1, {"n": 1}, "bob")]


def test_user_channel_without_rule() -> None:
    hub = make_hub((ChannelRule("*", None, None, history=5),))  # "*" matches user:bob too
    alice = FakeConn("alice", scopes=())
    hub.subscribe(alice, "user:alice")
    with pytest.raises(HubError):
        hub.subscribe(alice, "user:bob")
    hub = make_hub((ChannelRule("chat:*", None, None),))
    hub.subscribe(alice, "user:alice")
    with pytest.raises(HubError) as info:
        hub.publish("user:alice", 1, from_sub="x", scopes=frozenset({"notify"}))
    assert info.value.code == "forbidden"
    with pytest.raises(HubError) as info:
        hub.subscribe(alice, "user:")
    assert info.value.code == "forbidden"


def test_allows_any_channel() -> None:
    hub = make_hub()
    assert hub.allows_any_channel(frozenset({"chat:read"}))
    assert hub.allows_any_channel(frozenset({"notify"}))  # may publish to user:*
    # open:* has no scopes at all: anyone.
    assert hub.allows_any_channel(frozenset())
    strict = make_hub(
        (ChannelRule("chat:*", "chat:read", "chat:write"), ChannelRule("user:*", None, "notify"))
    )
    assert not strict.allows_any_channel(frozenset())  # own user channel does not count
    assert not strict.allows_any_channel(frozenset({"profile"}))
    assert strict.allows_any_channel(frozenset({"chat:write"}))
    assert strict.allows_any_channel(frozenset({"notify"}))
    assert not make_hub(()).allows_any_channel(frozenset({"chat:read"}))


@pytest.mark.parametrize("name", ["", "x" * 201, "chat:\x00", "chat:\n", "chat:\ud800"])
def test_bad_channel_names(name: str) -> None:
    hub = make_hub((ChannelRule("*", None, None),))
    conn = FakeConn()
    with pytest.raises(HubError) as info:
        hub.subscribe(conn, name)
    assert info.value.code == "bad_channel"
    with pytest.raises(HubError) as info:
        hub.publish(name, 1, from_sub="a", scopes=frozenset())
    assert info.value.code == "bad_channel"


def test_channel_length_limit_from_settings() -> None:
    hub = make_hub((ChannelRule("*", None, None),), max_channel_name=8)
    hub.subscribe(FakeConn(), "x" * 8)
    with pytest.raises(HubError):
        hub.subscribe(FakeConn(), "x" * 9)


@pytest.mark.parametrize("data", [math.nan, math.inf, {1, 2}, object(), b"bytes"])
def test_bad_data(data: Any) -> None:
    hub = make_hub()
    conn = FakeConn()
    hub.subscribe(conn, "chat:x")
    with pytest.raises(HubError) as info:
        hub.publish("chat:x", data, from_sub="alice", scopes=conn.scopes)
    assert info.value.code == "bad_data"
    # Nothing numbered, nothing delivered.
    assert hub.publish("chat:x", 1, from_sub="alice", scopes=conn.scopes).seq == 1


def test_too_deep_data_is_bad_data() -> None:
    hub = make_hub()
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(HubError) as info:
        hub.publish("chat:x", deep, from_sub="a", scopes=frozenset({"chat:write"}))
    assert info.value.code == "bad_data"


def test_rule_cache_is_bounded() -> None:
    hub = Hub(RULES, WebSocketSettings(), rule_cache_size=16)
    for i in range(1000):
        assert hub.rule_for(f"chat:{i}") is RULES[0]
    assert len(hub._cache) <= 16
    # Invalid names are never cached (a hit would skip the name check).
    hub.rule_for("chat:\x00")
    assert "chat:\x00" not in hub._cache


# -- subscription limits and idempotence ------------------------------------------


def test_subscribe_twice_is_idempotent() -> None:
    hub = make_hub()
    conn = FakeConn()
    hub.subscribe(conn, "chat:x")
    hub.publish("chat:x", 1, from_sub="a", scopes=conn.scopes)
    again = hub.subscribe(conn, "chat:x", since=0)
    assert (again.new, again.replay, again.recovered, again.seq) == (False, [], True, 1)
    assert hub.publish("chat:x", 2, from_sub="a", scopes=conn.scopes).delivered == 1
    assert [m["seq"] for m in conn.take()] == [1, 2]
    assert hub.subscriptions_of(conn) == ("chat:x",)


def test_too_many_subscriptions() -> None:
    hub = make_hub(max_subscriptions=3)
    conn = FakeConn()
    for i in range(3):
        hub.subscribe(conn, f"chat:{i}")
    with pytest.raises(HubError) as info:
        hub.subscribe(conn, "chat:3")
    assert info.value.code == "too_many_subscriptions"
    hub.subscribe(conn, "chat:1")  # already on it: still fine
    assert hub.unsubscribe(conn, "chat:0")
    hub.subscribe(conn, "chat:3")
    assert hub.subscriptions_of(conn) == ("chat:1", "chat:2", "chat:3")


def test_ten_thousand_subscribes() -> None:
    hub = make_hub()
    conn = FakeConn()
    codes = set()
    for i in range(10_000):
        try:
            hub.subscribe(conn, f"chat:{i}")
        except HubError as exc:
            codes.add(exc.code)
    assert codes == {"too_many_subscriptions"}
    assert len(hub.subscriptions_of(conn)) == 100
    assert hub.channel_count == 100


def test_unsubscribe() -> None:
    hub = make_hub()
    a, b = FakeConn(), FakeConn("bob")
    hub.subscribe(a, "chat:x")
    hub.subscribe(b, "chat:x")
    assert hub.unsubscribe(a, "chat:x")
    assert not hub.unsubscribe(a, "chat:x")
    assert not hub.unsubscribe(a, "chat:never")
    assert hub.publish("chat:x", 1, from_sub="b", scopes=b.scopes).delivered == 1
    assert a.take() == []
    assert hub.subscriber_count("chat:x") == 1


def test_unused_channels_are_freed() -> None:
    broker = InProcessBroker()
    hub = Hub(RULES, WebSocketSettings(), broker)
    conn = FakeConn()
    hub.subscribe(conn, "chat:x")
    hub.subscribe(conn, "open:y")
    assert hub.channel_count == 2 and broker.channel_count() == 2
    hub.unsubscribe(conn, "chat:x")
    hub.drop(conn)
    assert hub.channel_count == 0 and hub.subscription_count == 0
    assert broker.channel_count() == 0  # nothing was ever published


def test_drop_removes_everything() -> None:
    hub = make_hub()
    a, b = FakeConn(), FakeConn("bob")
    hub.connections.add(a)
    hub.connections.add(b)
    for ch in ("chat:1", "chat:2", "user:alice"):
        hub.subscribe(a, ch)
    hub.subscribe(b, "chat:1")
    hub.drop(a)
    hub.drop(a)  # idempotent
    assert hub.subscriptions_of(a) == ()
    assert a not in hub.connections and b in hub.connections
    assert hub.channels() == ("chat:1",)
    assert hub.publish("chat:1", 0, from_sub="b", scopes=b.scopes).delivered == 1


# -- history and since ------------------------------------------------------------


def publish_n(hub: Hub, channel: str, n: int) -> None:
    for i in range(n):
        hub.publish(channel, i, from_sub="p", scopes=frozenset({"chat:write"}))


def seqs(conn: FakeConn) -> list[int]:
    return [m["seq"] for m in conn.take()]


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


# -- reload ----------------------------------------------------------------------


def test_update_rules_revokes_subscriptions() -> None:
    hub = make_hub()
    a = FakeConn("alice", scopes=("chat:read",))
    b = FakeConn("bob", scopes=("chat:read", "chat:admin"))
    for conn in (a, b):
        hub.subscribe(conn, "chat:x")
        hub.subscribe(conn, "open:y")
    hub.subscribe(a, "user:alice")
    new_rules = (
        ChannelRule("chat:*", "chat:admin", "chat:write", history=5),
        ChannelRule("user:*", None, "notify"),
    )
    removed = hub.update_rules(new_rules, WebSocketSettings())
    assert sorted((c.sub, ch) for c, ch in removed) == [
        ("alice", "chat:x"), ("alice", "open:y"), ("bob", "open:y"),
    ]
    assert hub.subscriptions_of(a) == ("user:alice",)
    assert hub.subscriptions_of(b) == ("chat:x",)
    assert hub.revalidate() == []


def test_update_rules_resizes_history() -> None:
    hub = make_hub()
    publish_n(hub, "chat:x", 5)
    hub.update_rules((ChannelRule("chat:*", None, "chat:write", history=2),), WebSocketSettings())
    conn = FakeConn()
    r = hub.subscribe(conn, "chat:x", since=0)
    replay_into(conn, r)
    assert (seqs(conn), r.recovered) == ([4, 5], False)
    publish_n(hub, "chat:x", 1)
    r = hub.subscribe(FakeConn(), "chat:x", since=3)
    assert (len(r.replay), r.recovered) == (2, False)


def test_revalidate_one_connection_after_refresh() -> None:
    hub = make_hub()
    a = FakeConn(scopes=("chat:read",))
    other = FakeConn("bob", scopes=())
    hub.subscribe(a, "chat:x")
    hub.subscribe(a, "open:x")
    a.scopes = frozenset()
    other.scopes = frozenset()  # not revalidated: untouched
    assert [(c is a, ch) for c, ch in hub.revalidate(a)] == [(True, "chat:x")]
    assert hub.subscriptions_of(a) == ("open:x",)


# -- re-entrancy: a session closing itself from inside offer() ---------------------


class DroppingConn(FakeConn):
    """Overflows on its first frame and drops itself synchronously."""

    hub: Hub

    def offer(self, frame: bytes) -> None:
        super().offer(frame)
        self.withdraw(4009, "slow consumer")
        self.hub.drop(self)


def test_drop_during_fan_out() -> None:
    hub = make_hub()
    conns: list[FakeConn] = []
    for i in range(10):
        conn = DroppingConn(f"s{i}") if i % 3 == 0 else FakeConn(f"f{i}")
        conn.hub = hub  # type: ignore[attr-defined]
        conns.append(conn)
        hub.subscribe(conn, "chat:x")
    assert hub.publish("chat:x", 1, from_sub="p", scopes=frozenset({"chat:write"})).delivered == 10
    assert hub.publish("chat:x", 2, from_sub="p", scopes=frozenset({"chat:write"})).delivered == 6
    for conn in conns:
        expected = [1] if isinstance(conn, DroppingConn) else [1, 2]
        assert seqs(conn) == expected
        assert (conn.withdrawn is not None) == isinstance(conn, DroppingConn)


def test_dropping_another_connection_during_fan_out() -> None:
    hub = make_hub()
    victim = FakeConn("victim")

    class Killer(FakeConn):
        def offer(self, frame: bytes) -> None:
            super().offer(frame)
            hub.drop(victim)

    killer = Killer("killer")
    hub.subscribe(killer, "chat:x")
    hub.subscribe(victim, "chat:x")
    hub.publish("chat:x", 1, from_sub="p", scopes=frozenset({"chat:write"}))
    hub.publish("chat:x", 2, from_sub="p", scopes=frozenset({"chat:write"}))
    assert seqs(killer) == [1, 2]
    assert seqs(victim) == [1]  # its session ignores frames after closing


# -- presence --------------------------------------------------------------------


def test_presence_and_join_leave() -> None:
    hub = make_hub()
    a1, a2 = FakeConn("alice"), FakeConn("alice")
    b = FakeConn("bob")
    hub.subscribe(a1, "room:1")
    assert a1.take() == []  # no join to oneself
    hub.subscribe(b, "room:1")
    assert a1.take() == [{"type": "join", "channel": "room:1", "sub": "bob"}]
    assert b.take() == []
    hub.subscribe(a2, "room:1")  # alice's second connection: no join
    assert a1.take() == [] and b.take() == []
    members = hub.presence("room:1", sub="bob", scopes=b.scopes)
    assert members == [("alice", 2), ("bob", 1)]
    hub.unsubscribe(a1, "room:1")  # alice still has a2
    assert b.take() == []
    hub.drop(a2)
    assert b.take() == [{"type": "leave", "channel": "room:1", "sub": "alice"}]
    assert hub.presence("room:1", sub="bob", scopes=b.scopes) == [("bob", 1)]
    hub.drop(b)
    assert hub.presence("room:1", sub="bob", scopes=b.scopes) == []


def test_presence_needs_scope_and_flag() -> None:
    hub = make_hub()
    with pytest.raises(HubError) as info:
        hub.presence("room:1", sub="x", scopes=frozenset())
    assert info.value.code == "forbidden"
    with pytest.raises(HubError) as info:
        hub.presence("chat:1", sub="x", scopes=frozenset({"chat:read"}))
    assert info.value.code == "presence_disabled"
    with pytest.raises(HubError) as info:
        hub.presence("nope", sub="x", scopes=frozenset())
    assert info.value.code == "unknown_channel"


def test_leave_on_revalidate() -> None:
    hub = make_hub()
    a, b = FakeConn("alice"), FakeConn("bob")
    hub.subscribe(a, "room:1")
    hub.subscribe(b, "room:1")
    b.take()
    a.take()
    a.scopes = frozenset()
    hub.revalidate(a)
    assert b.take() == [{"type": "leave", "channel": "room:1", "sub": "alice"}]


def test_joins_and_leaves_are_not_numbered() -> None:
    hub = make_hub()
    a, b = FakeConn("alice"), FakeConn("bob")
    hub.subscribe(a, "room:1")
    hub.subscribe(b, "room:1")
    assert hub.publish("room:1", "x", from_sub="a", scopes=a.scopes).seq == 1
    r = hub.subscribe(FakeConn("carol"), "room:1", since=0)
    assert len(r.replay) == 1


# -- the connection index -----------------------------------------------------------


def test_connection_index() -> None:
    index = ConnectionIndex()
    a = FakeConn("alice", client_id="app1", kid="k1", jti="j1")
    b = FakeConn("alice", client_id="app2", kid="k2", jti="j2")
    c = FakeConn("bob", client_id="app1", kid="k1", jti="j3")
    for conn in (a, b, c):
        index.add(conn)
    index.add(a)  # twice: harmless
    assert len(index) == 3
    assert set(index.by_sub("alice")) == {a, b}
    assert set(index.by_client("app1")) == {a, c}
    assert set(index.by_kid("k1")) == {a, c}
    assert index.by_jti("j2") == (b,)
    assert index.by_jti("nope") == () and index.by_sub("nope") == ()
    assert set(index.kids()) == {"k1", "k2"}
    # An in-band refresh: new jti and kid.
    old = (a.sub, a.client_id, a.kid, a.jti)
    a.kid, a.jti = "k3", "j9"
    index.reindex(a, *old)
    assert index.by_jti("j1") == () and index.by_jti("j9") == (a,)
    assert index.by_kid("k1") == (c,) and index.by_kid("k3") == (a,)
    index.remove(a)
    index.remove(a)
    assert index.by_kid("k3") == () and set(index.by_sub("alice")) == {b}
    assert a not in index and len(index) == 2
    assert set(index.all()) == {b, c}
    # Removal uses the keys it was filed under, even if fields moved on.
    b.jti = "changed"
    index.remove(b)
    assert index.by_jti("j2") == () and index.by_jti("changed") == ()
    assert set(index.subs()) == {"bob"} and set(index.client_ids()) == {"app1"}


def test_index_lookups_are_snapshots() -> None:
    index = ConnectionIndex()
    conns = [FakeConn("alice", jti="same") for _ in range(5)]
    for conn in conns:
        index.add(conn)
    for conn in index.by_jti("same"):
        index.remove(conn)  # removing while walking the result is fine
    assert len(index) == 0


# -- hypothesis: arbitrary interleavings keep order, seq and since exact --------------

CHANNELS = ("chat:a", "chat:b", "open:c")
HISTORY = {"chat:a": 5, "chat:b": 5, "open:c": 0}
N_CONNS = 4


class HubMachine(RuleBasedStateMachine):
    """A model that knows only SPEC §5, beside the real hub.

    The model keeps every message ever published per channel and what each
    connection should have received; after every step the frames each fake
    connection got must equal that exactly.
    """

    @initialize()
    def setup(self) -> None:
        self.hub = make_hub()
        self.published: dict[str, list[int]] = {ch: [] for ch in CHANNELS}  # data per seq
        self.conns = [FakeConn(f"u{i}") for i in range(N_CONNS)]
        self.on: list[set[str]] = [set() for _ in range(N_CONNS)]
        self.expected: list[list[dict[str, Any]]] = [[] for _ in range(N_CONNS)]
        self.counter = 0

    def _kept(self, channel: str) -> list[int]:
        last = len(self.published[channel])
        return list(range(max(1, last - HISTORY[channel] + 1), last + 1))

    def _model_replay(self, channel: str, since: int) -> tuple[list[int], bool]:
        last = len(self.published[channel])
        missed = [s for s in range(since + 1, last + 1)]
        kept = [s for s in self._kept(channel) if s > since]
        return kept, since <= last and kept == missed

    def _subscribe(self, i: int, channel: str, since: int | None) -> None:
        conn = self.conns[i]
        result = self.hub.subscribe(conn, channel, since)
        last = len(self.published[channel])
        assert result.seq == last
        if channel in self.on[i]:
            assert not result.new and result.replay == [] and result.recovered
            return
        assert result.new
        self.on[i].add(channel)
        if since is None:
            assert result.replay == [] and result.recovered
        else:
            seqs_, recovered = self._model_replay(channel, since)
            assert result.recovered is recovered
            # Independently of the model: replayed seqs are consecutive and
            # end at the head; recovered means they start right after since.
            got = [json.loads(f[2:] if f[1] < 126 else f[4:])["seq"] for f in result.replay]
            assert got == list(range(last - len(got) + 1, last + 1))
            if recovered:
                assert got == list(range(since + 1, last + 1))
            else:
                assert since > last or not got or got[0] > since + 1
            for s in seqs_:
                self.expected[i].append(msg(channel, s, self.published[channel][s - 1], "pub"))
            replay_into(conn, result)

    @rule(i=st.integers(0, N_CONNS - 1), channel=st.sampled_from(CHANNELS))
    def subscribe(self, i: int, channel: str) -> None:
        self._subscribe(i, channel, None)

    @rule(
        i=st.integers(0, N_CONNS - 1),
        channel=st.sampled_from(CHANNELS),
        back=st.integers(-2, 9),
    )
    def subscribe_since(self, i: int, channel: str, back: int) -> None:
        since = max(0, len(self.published[channel]) - back)
        self._subscribe(i, channel, since)

    @rule(i=st.integers(0, N_CONNS - 1), channel=st.sampled_from(CHANNELS))
    def unsubscribe(self, i: int, channel: str) -> None:
        assert self.hub.unsubscribe(self.conns[i], channel) is (channel in self.on[i])
        self.on[i].discard(channel)

    @rule(channel=st.sampled_from(CHANNELS), n=st.integers(1, 4))
    def publish(self, channel: str, n: int) -> None:
        for _ in range(n):
            self.counter += 1
            result = self.hub.publish(
                channel, self.counter, from_sub="pub", scopes=frozenset({"chat:write"})
            )
            self.published[channel].append(self.counter)
            assert result.seq == len(self.published[channel])
            receivers = [i for i in range(N_CONNS) if channel in self.on[i]]
            assert result.delivered == len(receivers)
            for i in receivers:
                self.expected[i].append(msg(channel, result.seq, self.counter, "pub"))

    @rule(i=st.integers(0, N_CONNS - 1))
    def reconnect(self, i: int) -> None:
        """Drop connection i; a new one resumes each channel from its last seq."""
        old = self.conns[i]
        seen: dict[str, int] = {}
        for m in old.take():
            seen[m["channel"]] = m["seq"]
        # Everything received so far was checked by the invariant.
        channels = sorted(self.on[i])
        resume = {ch: seen.get(ch, 0) for ch in channels}
        self.hub.drop(old)
        assert self.hub.subscriptions_of(old) == ()
        self.conns[i] = FakeConn(old.sub)
        self.on[i] = set()
        self.expected[i] = []
        for ch in channels:
            self._subscribe(i, ch, resume[ch])

    @invariant()
    def everyone_got_exactly_what_the_model_says(self) -> None:
        for i, conn in enumerate(self.conns):
            got = conn.received()
            assert got == self.expected[i]


TestHubMachine = HubMachine.TestCase
TestHubMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
