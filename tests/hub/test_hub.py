"""The hub without sockets: subscribe and publish, rules and scopes,
limits, reload, and re-entrancy from inside ``offer()``."""

from __future__ import annotations

import math
from typing import Any

import pytest

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub import Hub, HubError, PublishResult
from realtime.hub.inprocess import InProcessBroker
from tests.helpers.hub import RULES, FakeConn, make_hub, msg, publish_n, replay_into, seqs


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
    assert hub.rules.cached <= 16
    # Invalid names are never cached (a hit would skip the name check).
    hub.rule_for("chat:\x00")
    assert not hub.rules.is_cached("chat:\x00")


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
