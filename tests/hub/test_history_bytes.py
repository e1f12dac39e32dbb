"""History bounded in bytes: per channel (``[[channel]]
history_bytes``) and across channels (``[websocket] max_history_bytes``,
the largest channel's oldest frame evicted first), idle channels capped by ``[websocket]
max_idle_channels``; a ``since`` that reaches past an eviction is
``recovered: false``."""

from __future__ import annotations

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub import Hub
from realtime.hub.inprocess import InProcessBroker
from tests.helpers.hub import FakeConn, replay_into, seqs

WRITE = frozenset({"chat:write"})
BLOB = "x" * 1000  # a frame of a bit over 1 KB


def hub_with(max_history_bytes: int, history_bytes: int = 1024 * 1024, **ws: object) -> tuple[Hub, InProcessBroker]:
    rules = (ChannelRule("big:*", "chat:read", "chat:write", history=100, history_bytes=history_bytes),)
    hub = Hub(rules, WebSocketSettings(max_history_bytes=max_history_bytes, **ws))
    assert isinstance(hub.broker, InProcessBroker)
    return hub, hub.broker


def publish(hub: Hub, channel: str, n: int) -> None:
    for _ in range(n):
        hub.publish(channel, BLOB, from_sub="p", scopes=WRITE)


def kept(hub: Hub, channel: str) -> list[int]:
    conn = FakeConn()
    result = hub.subscribe(conn, channel, since=0)
    replay_into(conn, result)
    hub.drop(conn)
    return seqs(conn)


def test_a_channel_keeps_at_most_history_bytes() -> None:
    hub, broker = hub_with(10**9, history_bytes=5500)
    publish(hub, "big:a", 20)
    assert broker.kept_bytes("big:a") <= 5500
    assert kept(hub, "big:a") == [16, 17, 18, 19, 20]  # 5 frames of ~1.05 KB fit


def test_the_global_budget_is_never_exceeded_and_evens_out_equal_channels() -> None:
    hub, broker = hub_with(10_000)
    for i in range(30):
        hub.publish(f"big:{i % 3}", BLOB, from_sub="p", scopes=WRITE)
        assert broker.history_bytes <= 10_000
    # Publishes went big:0, big:1, big:2, big:0, ...: equal channels, so each
    # keeps its newest third of the budget.
    survivors = {ch: kept(hub, ch) for ch in ("big:0", "big:1", "big:2")}
    assert survivors == {"big:0": [8, 9, 10], "big:1": [8, 9, 10], "big:2": [8, 9, 10]}
    assert broker.history_bytes == sum(broker.kept_bytes(f"big:{i}") for i in range(3))


def test_since_before_an_eviction_is_not_recovered() -> None:
    hub, _ = hub_with(5_000)
    publish(hub, "big:a", 10)
    conn = FakeConn()
    result = hub.subscribe(conn, "big:a", since=2)
    replay_into(conn, result)
    assert result.recovered is False
    assert seqs(conn) == [7, 8, 9, 10]
    result = hub.subscribe(FakeConn(), "big:a", since=6)
    assert result.recovered is True


def test_a_frame_larger_than_the_budget_is_not_kept_and_breaks_recovery() -> None:
    hub, broker = hub_with(10**9, history_bytes=3000)
    publish(hub, "big:a", 2)
    hub.publish("big:a", "y" * 5000, from_sub="p", scopes=WRITE)
    assert broker.kept_bytes("big:a") == 0
    assert hub.subscribe(FakeConn(), "big:a", since=1).recovered is False


def test_order_bookkeeping_stays_bounded_under_channel_trimming() -> None:
    hub, broker = hub_with(10**9, history_bytes=3000)
    publish(hub, "big:a", 5000)
    assert broker.order_entries() <= 2 * 3 + 64


def test_max_idle_channels_is_configurable() -> None:
    hub, broker = hub_with(10**9, max_idle_channels=3)
    for i in range(10):
        hub.publish(f"big:{i}", 1, from_sub="p", scopes=WRITE)
    assert broker.channel_count() == 3
    assert hub.subscribe(FakeConn(), "big:0", since=1).recovered is False  # forgotten


def test_a_reload_applies_smaller_budgets_at_once() -> None:
    hub, broker = hub_with(10**9)
    publish(hub, "big:a", 20)
    rules = (ChannelRule("big:*", "chat:read", "chat:write", history=100, history_bytes=4000),)
    hub.update_rules(rules, WebSocketSettings(max_history_bytes=2200))
    assert broker.history_bytes <= 2200
    assert kept(hub, "big:a") == [19, 20]


def test_a_flood_on_one_channel_never_evicts_a_quiet_channels_small_history() -> None:
    hub, broker = hub_with(20_000)
    publish(hub, "big:quiet", 3)
    for _ in range(500):
        hub.publish("big:flood", BLOB, from_sub="mallory", scopes=WRITE)
        assert broker.history_bytes <= 20_000
        assert kept(hub, "big:quiet") == [1, 2, 3]
    # The flood keeps what is left of the budget, newest last.
    flood = kept(hub, "big:flood")
    assert flood[-1] == 500 and flood == list(range(flood[0], 501))
    assert broker.kept_bytes("big:flood") > 20_000 - broker.kept_bytes("big:quiet") - 1100
    # recovered:false semantics are unchanged: the flood's evicted past is
    # reported, the quiet channel's whole history is recovered.
    assert hub.subscribe(FakeConn(), "big:flood", since=1).recovered is False
    assert hub.subscribe(FakeConn(), "big:flood", since=flood[0] - 1).recovered is True
    assert hub.subscribe(FakeConn(), "big:quiet", since=0).recovered is True


def test_every_channel_keeps_at_least_its_fair_share() -> None:
    # Four channels with history, a budget of ~20 frames: a fair share is ~5.
    hub, broker = hub_with(21_000)
    publish(hub, "big:a", 2)
    publish(hub, "big:b", 4)
    for i in range(300):
        hub.publish("big:c" if i % 3 else "big:d", BLOB, from_sub="p", scopes=WRITE)
        assert broker.history_bytes <= 21_000
    assert kept(hub, "big:a") == [1, 2] and kept(hub, "big:b") == [1, 2, 3, 4]
    share = 21_000 // 4
    # c and d (the floods) even out above their share, each within one frame.
    for channel in ("big:c", "big:d"):
        assert broker.kept_bytes(channel) >= share - 1100
    assert abs(broker.kept_bytes("big:c") - broker.kept_bytes("big:d")) <= 1100
    assert broker.history_bytes == sum(broker.kept_bytes(f"big:{c}") for c in "abcd")


def test_eviction_bookkeeping_stays_bounded_across_many_channels() -> None:
    hub, broker = hub_with(50_000)
    for i in range(3000):
        hub.publish(f"big:{i % 40}", BLOB, from_sub="p", scopes=WRITE)
        assert broker.order_entries() <= 2 * broker.channel_count() + 64
    assert broker.history_bytes <= 50_000
